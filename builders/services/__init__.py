"""State changes of the builders app. Callers import from here."""

from builders.services.access import (
    Access,
    DeployError,
    LeaseInfo,
    deploy_ssh_access,
    refresh_lease_file,
    warn_expiring,
)
from builders.services.common import TASK, TICK, LeaseNotActive, OverQuota, ProlongRefused, Via
from builders.services.gateway import record_gateway_logins, write_gateway_keys
from builders.services.leases import (
    MAX_PROLONG_HOURS,
    assign_waiting_leases,
    expire_leases,
    keep_after_work,
    keep_for_ssh,
    prolong_lease,
    promote_all_queued,
    promote_queued_leases,
    recover_stuck_leases,
    release_lease,
    request_lease,
    start_lease,
)
from builders.services.machines import (
    check_idle_builders,
    delete_builder,
    delete_terminating,
    ensure_capacity,
    health_check,
    provision_builder,
    retry_due_provisions,
    terminate_builder,
)
from builders.services.pools import PoolHealth, resume_pool
from builders.services.pools import health_of as pool_health
from builders.services.quota import quota_for, slot_holders
from builders.services.recovery import delete_orphans, recover_abandoned_builders, recover_stuck
from builders.services.tokens import issue_lease_token, lease_for_token

__all__ = [
    "MAX_PROLONG_HOURS",
    "Access",
    "DeployError",
    "LeaseInfo",
    "deploy_ssh_access",
    "refresh_lease_file",
    "warn_expiring",
    "TASK",
    "TICK",
    "LeaseNotActive",
    "OverQuota",
    "ProlongRefused",
    "Via",
    "assign_waiting_leases",
    "check_idle_builders",
    "PoolHealth",
    "pool_health",
    "recover_abandoned_builders",
    "resume_pool",
    "retry_due_provisions",
    "delete_builder",
    "delete_orphans",
    "delete_terminating",
    "ensure_capacity",
    "expire_leases",
    "health_check",
    "issue_lease_token",
    "keep_after_work",
    "keep_for_ssh",
    "lease_for_token",
    "promote_all_queued",
    "promote_queued_leases",
    "prolong_lease",
    "provision_builder",
    "quota_for",
    "recover_stuck",
    "recover_stuck_leases",
    "release_lease",
    "request_lease",
    "slot_holders",
    "start_lease",
    "terminate_builder",
    "record_gateway_logins",
    "write_gateway_keys",
]
