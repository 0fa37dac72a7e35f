"""Every DNS provider type users look for (PRODUCT.md), with how acmeflow backs it.

``native``: our own adapter (Route 53, Azure DNS, Google Cloud DNS, RFC 2136 and Knot DNS,
ACME DNS). ``lexicon``: the generic dns-lexicon 3.25 adapter, fields taken from the lexicon
module's own ``configure_parser`` (required ones curated from its ``authenticate``).
``unsupported``: with the reason. Where lexicon and a native adapter both exist, native wins.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field

from acmeflow.core.dnsprovider import DNSProvider, ProviderField, ProviderType
from acmeflow.core.errors import ConfigError
from acmeflow.providers.dns import acmedns, azure, google, rfc2136, route53
from acmeflow.providers.dns.lexicon import DEFAULT_LEXICON_TTL, LexiconProvider, lexicon_fields


@dataclass(frozen=True)
class LexiconSpec:
    """A lexicon-backed type: module, required options, alternatives, defaults."""

    name: str
    label: str
    module: str
    required: tuple[str, ...] = ()
    one_of: tuple[tuple[str, ...], ...] = ()  # at least one option of each group
    defaults: Mapping[str, str] = field(default_factory=dict)
    note: str = ""
    aliases: tuple[str, ...] = ()
    default_ttl: int = DEFAULT_LEXICON_TTL


_NO_LEXICON = (
    "not in dns-lexicon 3.25 and no native adapter; delegate _acme-challenge with a CNAME "
    "to a zone on a supported provider (e.g. ACME DNS or RFC 2136)"
)

LEXICON_SPECS: tuple[LexiconSpec, ...] = (
    LexiconSpec(
        "aliyun",
        "Aliyun",
        "aliyun",
        ("auth_key_id", "auth_secret"),
        aliases=("alibaba cloud dns", "alidns"),
    ),
    LexiconSpec(
        "cloudns",
        "ClouDNS.net",
        "cloudns",
        ("auth_password",),
        one_of=(("auth_id", "auth_subid", "auth_subuser"),),
        aliases=("cloudns",),
    ),
    LexiconSpec(
        "cloudflare",
        "CloudFlare",
        "cloudflare",
        ("auth_token",),
        note="API token (Zone:Read + DNS:Edit) or global key with auth_username",
    ),
    LexiconSpec("conoha", "ConoHa", "conoha", one_of=(("auth_token", "auth_username"),)),
    LexiconSpec("dnsmadeeasy", "DNSMadeEasy", "dnsmadeeasy", ("auth_username", "auth_token")),
    LexiconSpec(
        "dnspod",
        "DNSPod.cn",
        "dnspod",
        ("auth_username", "auth_token"),
        note="dnsapi.cn API: auth_username is the API token id",
    ),
    LexiconSpec("dnsimple", "DNSimple", "dnsimple", one_of=(("auth_token", "auth_username"),)),
    LexiconSpec("digitalocean", "DigitalOcean", "digitalocean", ("auth_token",)),
    LexiconSpec(
        "directadmin", "DirectAdmin", "directadmin", ("auth_username", "auth_password", "endpoint")
    ),
    LexiconSpec("dreamhost", "DreamHost", "dreamhost", ("auth_token",)),
    LexiconSpec(
        "duckdns",
        "DuckDNS.org",
        "duckdns",
        ("auth_token",),
        note="DuckDNS holds one TXT value per domain: apex + wildcard cannot coexist",
    ),
    LexiconSpec("exoscale", "Exoscale", "exoscale", ("auth_key", "auth_secret")),
    LexiconSpec(
        "gandi",
        "Gandi LiveDNS",
        "gandi",
        ("auth_token",),
        defaults={"api_protocol": "rest"},
        note="LiveDNS REST API (api_protocol=rest)",
    ),
    LexiconSpec("godaddy", "GoDaddy.com", "godaddy", ("auth_key", "auth_secret")),
    LexiconSpec(
        "henet",
        "Hurricane Electric",
        "henet",
        ("auth_username", "auth_password"),
        note="dns.he.net web interface (no API); no 2FA",
        aliases=("he.net", "he"),
    ),
    LexiconSpec("inwx", "INWX", "inwx", ("auth_username", "auth_password")),
    LexiconSpec(
        "infoblox",
        "Infoblox",
        "infoblox",
        ("auth_user", "auth_psw", "ib_host"),
        defaults={"ib_view": "default"},
    ),
    LexiconSpec("linode", "Linode", "linode", ("auth_token",), note="Linode API v4"),
    LexiconSpec("luadns", "LuaDNS", "luadns", ("auth_username", "auth_token")),
    LexiconSpec("misaka", "Misaka.io", "misaka", ("auth_token",)),
    LexiconSpec("nsone", "NS1.com", "nsone", ("auth_token",), aliases=("ns1",)),
    LexiconSpec("namecom", "Name.com", "namecom", ("auth_username", "auth_token")),
    LexiconSpec(
        "namecheap",
        "Namecheap",
        "namecheap",
        ("auth_username", "auth_token"),
        note="the API needs the caller's public IP whitelisted (auth_client_ip)",
    ),
    LexiconSpec("namesilo", "Namesilo", "namesilo", ("auth_token",)),
    LexiconSpec(
        "netcup", "Netcup", "netcup", ("auth_customer_id", "auth_api_key", "auth_api_password")
    ),
    LexiconSpec("online", "Online.net", "online", ("auth_token",), aliases=("scaleway online",)),
    LexiconSpec(
        "plesk",
        "Plesk XML",
        "plesk",
        ("auth_username", "auth_password", "plesk_server"),
        aliases=("plesk",),
    ),
    LexiconSpec("pointhq", "PointHQ", "pointhq", ("auth_username", "auth_token")),
    LexiconSpec(
        "powerdns", "PowerDNS", "powerdns", ("auth_token", "pdns_server"), aliases=("pdns",)
    ),
    LexiconSpec("rcodezero", "RcodeZero", "rcodezero", ("auth_token",)),
    LexiconSpec("ultradns", "UltraDNS", "ultradns", one_of=(("auth_token", "auth_username"),)),
    LexiconSpec("vultr", "Vultr", "vultr", ("auth_token",)),
    LexiconSpec("zilore", "Zilore", "zilore", ("auth_key",)),
    LexiconSpec("zonomi", "Zonomi", "zonomi", ("auth_token",)),
    LexiconSpec(
        "desec",
        "deSEC.io",
        "desec",
        one_of=(("auth_token", "auth_username"),),
        note="deSEC's minimum TTL is 3600 (the default here)",
        default_ttl=3600,
    ),
    LexiconSpec("easydns", "easyDNS.net", "easydns", ("auth_username", "auth_token")),
    LexiconSpec("hostingde", "hosting.de", "hostingde", ("auth_token",)),
)

#: (type id, PRODUCT.md label, reason) of the types acmeflow cannot serve.
UNSUPPORTED: tuple[tuple[str, str, str], ...] = (
    ("active24", "Active24", _NO_LEXICON),
    ("alwaysdata", "Alwaysdata", _NO_LEXICON),
    ("corenetworks", "Core-Networks", _NO_LEXICON),
    (
        "ddnss",
        "DDNSS.de",
        "not in dns-lexicon 3.25 (its 'ddns' module is RFC 2136 dynamic update, not the "
        "ddnss.de API); " + _NO_LEXICON.split("; ", 1)[1],
    ),
    (
        "dnspodcom",
        "DNSPod.com",
        "dns-lexicon 3.25's dnspod module speaks only the dnsapi.cn (DNSPod.cn) API; "
        "use DNSPod.cn for accounts there",
    ),
    ("freedns", "FreeDNS", "FreeDNS (afraid.org) has no API for TXT records; " + _NO_LEXICON),
    ("ispconfig", "ISPConfig 3.1", _NO_LEXICON),
    ("leaseweb", "Leaseweb.com", _NO_LEXICON),
    ("loopia", "Loopia", _NO_LEXICON),
    ("mailinabox", "MailinaBox", _NO_LEXICON),
    (
        "maradns",
        "MaraDNS",
        "MaraDNS has no dynamic update (RFC 2136) and no API: zones are edited as files",
    ),
    ("mydnsjp", "MyDNS.JP", _NO_LEXICON),
    (
        "nsd",
        "NLnetLabs NSD",
        "NSD does not support dynamic updates (RFC 2136): zones are files reloaded with "
        "nsd-control; serve _acme-challenge from a server that does (CNAME delegation)",
    ),
    ("neodigit", "Neodigit.net", _NO_LEXICON),
    ("nexcess", "Nexcess", _NO_LEXICON),
    ("opnsense", "OPNsense", _NO_LEXICON),
    ("openprovider", "OpenProvider", _NO_LEXICON),
    ("schlundtech", "Schlundtech", _NO_LEXICON),
    ("selectel", "Selectel", _NO_LEXICON),
    ("vscale", "VSCALE", _NO_LEXICON),
    ("autodns", "autoDNS-InternetX", _NO_LEXICON),
    ("cyon", "cyon.ch", _NO_LEXICON),
    ("durabledns", "durabledns.com", _NO_LEXICON),
    ("jdcloud", "jdcloud.com", _NO_LEXICON),
    ("nicru", "nic.ru", _NO_LEXICON),
    ("onecom", "one.com", _NO_LEXICON),
    ("regru", "reg.ru", _NO_LEXICON),
)

#: Native adapters (the ones also in lexicon -- route53, azure, googleclouddns -- win).
NATIVE: tuple[ProviderType, ...] = (
    acmedns.PROVIDER,
    route53.PROVIDER,
    azure.PROVIDER,
    google.PROVIDER,
    rfc2136.KNOT_PROVIDER,
    rfc2136.PROVIDER,
)

#: lexicon modules never offered as extra types (covered natively, or not a DNS service).
_LEXICON_SKIP = frozenset({"route53", "azure", "googleclouddns", "ddns", "auto", "localzone"})


def _lexicon_factory(spec: LexiconSpec) -> ProviderType:
    fields = lexicon_fields(spec.module, spec.required, spec.defaults)

    if spec.default_ttl != DEFAULT_LEXICON_TTL:
        fields = tuple(
            ProviderField(
                f.name, f.kind, f.required, f"TTL of the TXT records (default {spec.default_ttl})"
            )
            if f.name == "ttl"
            else f
            for f in fields
        )

    def factory(settings: Mapping[str, str], secrets: Mapping[str, str]) -> DNSProvider:
        given = {k for m in (settings, secrets) for k, v in m.items() if v}
        for group in spec.one_of:
            if not given.intersection(group):
                raise ConfigError(
                    detail=f"{spec.name}: missing field: set one of "
                    + ", ".join(f"'{name}'" for name in group)
                )
        return LexiconProvider(
            spec.name,
            spec.module,
            settings,
            secrets,
            defaults=spec.defaults,
            default_ttl=spec.default_ttl,
        )

    return ProviderType(
        name=spec.name,
        label=spec.label,
        backing="lexicon",
        fields=fields,
        factory=factory,
        reason=f"dns-lexicon '{spec.module}'" + (f"; {spec.note}" if spec.note else ""),
        aliases=spec.aliases,
    )


def _extra_lexicon_types(taken: set[str]) -> list[ProviderType]:
    """Every other usable lexicon 3.25 module, offered under its module name."""
    from lexicon._private.discovery import find_providers

    extra = []
    for module, available in find_providers().items():
        if module in taken or module in _LEXICON_SKIP or not available:
            continue
        spec = LexiconSpec(
            module,
            module,
            module,
            note="not a PRODUCT.md type; required fields not curated, see the lexicon docs",
        )
        try:
            extra.append(_lexicon_factory(spec))
        except Exception:  # a module that cannot describe its options is not offered
            continue
    return extra


@functools.cache
def catalog() -> tuple[ProviderType, ...]:
    """Every built-in provider type: the PRODUCT.md types first, then extra lexicon modules."""
    types: list[ProviderType] = list(NATIVE)
    types += [_lexicon_factory(spec) for spec in LEXICON_SPECS]
    types += [
        ProviderType(name=name, label=label, backing="unsupported", reason=reason)
        for name, label, reason in UNSUPPORTED
    ]
    taken = {t.name for t in types} | {spec.module for spec in LEXICON_SPECS}
    types += _extra_lexicon_types(taken)
    return tuple(types)


#: The PRODUCT.md labels, in its order (the registry test checks every one is served).
PRODUCT_LABELS: tuple[str, ...] = (
    "ACME DNS", "Active24", "Aliyun", "Alwaysdata", "Amazon Route53", "Azure DNS",
    "ClouDNS.net", "CloudFlare", "ConoHa", "Core-Networks", "DDNSS.de", "DNSMadeEasy",
    "DNSPod.cn", "DNSPod.com", "DNSimple", "DigitalOcean", "DirectAdmin", "DreamHost",
    "DuckDNS.org", "Exoscale", "FreeDNS", "Gandi LiveDNS", "GoDaddy.com", "Google Cloud DNS",
    "Hurricane Electric", "INWX", "ISPConfig 3.1", "Infoblox", "Knot DNS", "Leaseweb.com",
    "Linode", "Loopia", "LuaDNS", "MailinaBox", "MaraDNS", "Misaka.io", "MyDNS.JP",
    "NLnetLabs NSD", "NS1.com", "Name.com", "Namecheap", "Namesilo", "Neodigit.net", "Netcup",
    "Nexcess", "OPNsense", "Online.net", "OpenProvider", "Plesk XML", "PointHQ", "PowerDNS",
    "RcodeZero", "Schlundtech", "Selectel", "UltraDNS", "VSCALE", "Vultr", "Zilore", "Zonomi",
    "autoDNS-InternetX", "cyon.ch", "deSEC.io", "durabledns.com", "easyDNS.net", "hosting.de",
    "jdcloud.com", "nic.ru", "nsupdate (RFC 2136)", "one.com", "reg.ru",
)  # fmt: skip
