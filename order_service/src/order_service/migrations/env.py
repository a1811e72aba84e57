from mart_common.migrations import run_env

from order_service.models import METADATA

run_env(METADATA)
