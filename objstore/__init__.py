"""objstore: storage engine for Seafile-style content-addressed objects.

>>> stores = objstore.open_stores("/etc/seafile/seafile.conf")
>>> stores.block.write(repo_id, obj_id, data)
"""

from __future__ import annotations

from .classes import (
    DictMapping,
    RepoMapping,
    StorageClass,
    StorageClasses,
    StorageClassesConfig,
    load_storage_classes,
    open_storage_classes,
)
from .config import StoreConfig, config_from_env, load_config
from .errors import (
    AuthError,
    BackendUnavailable,
    BucketNotFound,
    ConfigError,
    CorruptObject,
    EncryptionKeyError,
    InvalidId,
    NotFound,
    ObjStoreError,
    PermissionDenied,
    ServerSideCopyUnsupported,
    StorageFull,
)
from .ids import ObjectInfo, ObjKind
from .migration import (
    Failure,
    KindPlan,
    MigrateOptions,
    Migration,
    MigrationInterrupted,
    MigrationResult,
    Plan,
    TransferResult,
    VerifyResult,
    migrate,
)
from .store import ObjectStore, Stores, open_config, open_stores


def verify_object(kind: ObjKind, obj_id: str, data: bytes) -> None:
    """Raise CorruptObject unless ``data`` is a valid object of ``kind`` with id ``obj_id``."""
    from .formats import verify_object as _verify

    _verify(kind, obj_id, data)


__all__ = [
    "AuthError",
    "BackendUnavailable",
    "BucketNotFound",
    "ConfigError",
    "CorruptObject",
    "DictMapping",
    "EncryptionKeyError",
    "Failure",
    "InvalidId",
    "KindPlan",
    "MigrateOptions",
    "Migration",
    "MigrationInterrupted",
    "MigrationResult",
    "NotFound",
    "ObjKind",
    "ObjStoreError",
    "ObjectInfo",
    "ObjectStore",
    "PermissionDenied",
    "Plan",
    "RepoMapping",
    "ServerSideCopyUnsupported",
    "StorageClass",
    "StorageClasses",
    "StorageClassesConfig",
    "StorageFull",
    "StoreConfig",
    "Stores",
    "TransferResult",
    "VerifyResult",
    "config_from_env",
    "load_config",
    "load_storage_classes",
    "migrate",
    "open_config",
    "open_storage_classes",
    "open_stores",
    "verify_object",
]
__version__ = "0.1.0"
