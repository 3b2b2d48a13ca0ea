"""The Prometheus exporter: the collector over the kernel's counters, serving /metrics, --check."""
