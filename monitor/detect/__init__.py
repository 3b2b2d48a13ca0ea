"""Detections: kcmp signatures over the calls (live or recorded), each a unit of its own with
its metadata and bounded state, configured by one YAML rule file."""
