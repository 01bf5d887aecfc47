"""The native voiceobs monitoring stack: build, configure, start and stop the
OpenTelemetry Collector, Jaeger, Loki, Prometheus and Alertmanager without Docker.

Run it as ``python -m stack {build,up,down,status,logs,render,validate}`` (the
``stack-*`` make targets do). Configs are shared with the Docker stack; this
package only decides addresses, paths and process supervision.
"""
