from mart_common.migrations import run_env

from user_service.models import METADATA

run_env(METADATA)
