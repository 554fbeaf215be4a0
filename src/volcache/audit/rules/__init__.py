"""The rules of `volcache audit`, one per module, in code order.

VC1xx read Python, VC2xx read Dockerfiles. Codes are stable: a rule that is removed
leaves its code unused.
"""

from __future__ import annotations

from ._base import DockerfileRule, PythonRule, Rule
from .vc101_copy_model_files import CopyModelFiles
from .vc102_shell_copy_model import ShellCopyModel
from .vc103_download_local_dir import DownloadLocalDir
from .vc104_cache_env_after_import import CacheEnvAfterImport
from .vc105_transformers_cache import TransformersCache
from .vc106_volume_cache import VolumeCacheOverModels
from .vc107_saved_twice import SavedTwice
from .vc201_download_into_mount import DownloadIntoMount
from .vc202_cache_env_on_container_disk import CacheEnvOnContainerDisk
from .vc203_copy_weights_into_image import CopyWeightsIntoImage
from .vc204_run_copy_model import RunCopyModel
from .vc205_dockerfile_transformers_cache import DockerfileTransformersCache

ALL_RULES: tuple[Rule, ...] = (
    CopyModelFiles(),
    ShellCopyModel(),
    DownloadLocalDir(),
    CacheEnvAfterImport(),
    TransformersCache(),
    VolumeCacheOverModels(),
    SavedTwice(),
    DownloadIntoMount(),
    CacheEnvOnContainerDisk(),
    CopyWeightsIntoImage(),
    RunCopyModel(),
    DockerfileTransformersCache(),
)

# Not a rule: the code of a file that cannot be read or parsed, so nothing vouches for it.
PARSE_ERROR = "VC001"
PARSE_ERROR_SUMMARY = "file cannot be read or parsed, so it was not audited"
PARSE_ERROR_FIX = "fix the syntax or the encoding, or exclude the file in [tool.volcache.audit]"

__all__ = ["ALL_RULES", "PARSE_ERROR", "DockerfileRule", "PythonRule", "Rule"]
