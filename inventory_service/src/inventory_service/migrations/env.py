from mart_common.migrations import run_env

from inventory_service.models import METADATA

run_env(METADATA)
