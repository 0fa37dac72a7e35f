"""Fault suite: each finding of an issue, reproduced by doing the fault (``make faults``)."""
