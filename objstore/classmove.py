"""Moving libraries between storage classes, and removing what a move left behind.

A move is a normal migration (:class:`objstore.migration.Migration`) of the
selected libraries from one class's configuration to another's: planned,
resumable, verified.  Only when asked, :meth:`ClassMove.update_mapping` points the
libraries at the new class in ``RepoStorageId`` (one transaction).
:func:`remove_objects` deletes a library's objects from a class it no longer lives
in, after a hash verification against the class it lives in now.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection
from dataclasses import dataclass, field

from .classes import StorageClasses
from .errors import ConfigError
from .ids import ObjKind, check_repo_id
from .migration import MigrateOptions, Migration, MigrationResult, VerifyResult
from .progress import Progress

DELETE_ORDER = (ObjKind.COMMIT, ObjKind.FS, ObjKind.BLOCK)
"""Commits go first, so a half-cleaned class never holds a commit without its objects."""


class ClassMove:
    """Libraries of class ``from_id`` to move to class ``to_id``: the given ``repos``
    (each must live in ``from_id``), or every library living there."""

    def __init__(
        self,
        classes: StorageClasses,
        from_id: str,
        to_id: str,
        repos: Collection[str] | None = None,
    ) -> None:
        classes.stores_of(from_id)
        classes.stores_of(to_id)
        if from_id == to_id:
            raise ConfigError(f"--from-class and --to-class are both {from_id!r}")
        self.classes, self.from_id, self.to_id = classes, from_id, to_id
        if repos is None:
            self.repos = classes.libraries_in(from_id)
        else:
            self.repos = sorted({check_repo_id(r) for r in repos})
            for repo in self.repos:
                now = classes.class_of(repo)
                if now != from_id:
                    raise ConfigError(
                        f"library {repo} lives in class {now!r}, not {from_id!r} (RepoStorageId)"
                    )

    def migrate(self, options: MigrateOptions, progress: Progress | None = None) -> MigrationResult:
        """One migration run of the selected libraries (MigrationInterrupted on Ctrl-C)."""
        cfg = self.classes.config.classes
        opts = dataclasses.replace(options, repos=frozenset(self.repos))
        with Migration.open(
            cfg[self.from_id].config, cfg[self.to_id].config, opts, progress=progress
        ) as migration:
            return migration.run()

    @staticmethod
    def final_options(options: MigrateOptions) -> MigrateOptions:
        """The final delta run before the mapping changes: verified (``hash`` if the
        run asked for it, else ``size``), never a dry run."""
        verify = "hash" if options.verify == "hash" else "size"
        return dataclasses.replace(options, verify=verify, dry_run=False, verify_only=False)

    def update_mapping(self) -> None:
        """Point every selected library at ``to_id`` in ``RepoStorageId``, in one transaction."""
        self.classes.mapping.set_storage_id(self.repos, self.to_id)


@dataclass
class RemoveResult:
    """What :func:`remove_objects` did.  ``refused`` says why nothing was deleted;
    ``objects``/``bytes`` count what was (or, in a dry run, would be) deleted."""

    storage_id: str
    repo_id: str
    lives_in: str
    dry_run: bool
    verify: VerifyResult | None = None
    refused: str | None = None
    objects: dict[str, int] = field(default_factory=dict)
    bytes: int = 0


def remove_objects(
    classes: StorageClasses,
    storage_id: str,
    repo_id: str,
    *,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> RemoveResult:
    """Delete library ``repo_id``'s objects from class ``storage_id``, which it no
    longer lives in.  ConfigError while the mapping still points there; refused
    (``result.refused``) unless a hash verification finds every object of it at the
    class it lives in now, present and matching its id."""
    repo = check_repo_id(repo_id)
    stores = classes.stores_of(storage_id)
    lives_in = classes.class_of(repo)
    if lives_in == storage_id:
        raise ConfigError(
            f"library {repo} still lives in class {storage_id!r} (RepoStorageId or the "
            "default class): nothing was deleted"
        )
    cfg = classes.config.classes
    options = MigrateOptions(repos=frozenset({repo}), verify_only=True, verify="hash")
    with Migration.open(
        cfg[storage_id].config, cfg[lives_in].config, options, progress=progress
    ) as migration:
        check = migration.run()
    result = RemoveResult(storage_id, repo, lives_in, dry_run, verify=check.verify)
    v = check.verify
    if not check.ok or v is None:
        result.refused = (
            f"class {lives_in!r} does not hold every object of library {repo} intact"
            + (
                f": {v.missing} missing, {v.mismatched} wrong size, {v.corrupt} corrupt, "
                f"{v.failed} unreadable"
                if v is not None
                else f": {check.fatal or 'verification did not finish'}"
            )
            + "; nothing was deleted"
        )
        return result
    for kind in DELETE_ORDER:
        count = 0
        for info in stores[kind].list(repo):
            count += 1
            result.bytes += info.size
        result.objects[kind.value] = count
        if not dry_run:
            stores[kind].remove_repo(repo)  # batched where the driver can (S3 multi-delete)
    return result
