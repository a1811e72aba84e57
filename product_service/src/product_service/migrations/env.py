from mart_common.migrations import run_env

from product_service.models import METADATA

run_env(METADATA)
