"""The service's own Prometheus metrics (prefix ``yec_``), beside the Temporal SDK's (``temporal_``).

Counters of what a process did live here (prometheus-client). Rotation outcomes are counted by the
workflow through the SDK's replay-safe meter (``ROTATIONS``), and the fleet's state (phases, expiries,
pending human actions) is read from Temporal by monitoring.py: both reach the same ``/metrics``.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, disable_created_metrics

# A "_created" twin of every counter doubles the series and no rule or panel uses it.
disable_created_metrics()  # type: ignore[no-untyped-call]

UP = Gauge("yec_up", "1 while this process serves metrics")
REMINDERS_SENT = Counter("yec_reminders_sent", "Notifications issued (reminders, alerts), by severity", ["severity"])
NOTIFICATIONS_FAILED = Counter(
    "yec_notifications_failed", "Notification deliveries that failed, by channel", ["channel"]
)
GRAPH_REQUESTS = Counter(
    "yec_graph_requests",
    "Microsoft Graph requests by method and HTTP status ('error': no answer)",
    ["method", "status"],
)
GRAPH_THROTTLED = Counter("yec_graph_throttled", "Microsoft Graph answers asking to slow down (429, 503)")
SECRET_STORE_ERRORS = Counter(
    "yec_secret_store_errors", "Secret store calls that could not be answered", ["backend", "operation"]
)

# Counted by IntegrationWorkflow with workflow.metric_meter() (exported by the SDK with "_total").
ROTATIONS = "yec_rotations"
ROTATION_OUTCOMES = ("completed", "failed", "abandoned", "expired")

# The fleet gauges (monitoring.FleetGauges).
FLEET_GAUGES = frozenset(
    {
        "yec_integration_info",
        "yec_integrations",
        "yec_secret_expiry_timestamp_seconds",
        "yec_secret_soonest_expiry_seconds",
        "yec_rotation_running",
        "yec_pending_human_actions",
        "yec_pending_human_action_age_seconds",
        "yec_fleet_refresh_timestamp_seconds",
    }
)

# The Temporal SDK's metrics that deploy/ uses (exported with counters_total_suffix and durations in
# seconds; see monitoring.sdk_runtime).
SDK_METRICS = frozenset(
    {
        "temporal_request_total",
        "temporal_request_failure_total",
        "temporal_long_request_failure_total",
        "temporal_num_pollers",
        "temporal_worker_task_slots_available",
        "temporal_worker_task_slots_used",
        "temporal_sticky_cache_size",
        "temporal_workflow_completed_total",
        "temporal_workflow_failed_total",
        "temporal_workflow_task_execution_failed_total",
        "temporal_workflow_task_schedule_to_start_latency",
        "temporal_workflow_task_execution_latency",
        "temporal_activity_execution_failed_total",
        "temporal_activity_schedule_to_start_latency",
        "temporal_activity_execution_latency",
    }
)

EXPORTED_METRIC_NAMES = frozenset(
    {
        "yec_up",
        "yec_reminders_sent_total",
        "yec_notifications_failed_total",
        "yec_graph_requests_total",
        "yec_graph_throttled_total",
        "yec_secret_store_errors_total",
        f"{ROTATIONS}_total",
        *FLEET_GAUGES,
        *SDK_METRICS,
    }
)
