"""Probe mode: kcmp called directly (no BPF) to tell which resources processes share."""
