"""Qwen3 weights from ModelScope (default) or Hugging Face onto the data disk: resolved, checked, verified.

    dl = download_model("Qwen3-14B")                       # unsloth/Qwen3-14B-unsloth-bnb-4bit from ModelScope

The hub's own client downloads (resuming partial files); every listed file is then checked for size and sha256,
since the client can report success with files missing, and a manifest lets a second call return offline.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from kit.errors import KitError
from kit.files import write_atomic
from kit.models.profiles import PROFILES, VARIANTS, find, nearest
from kit.paths import cache_root, shown
from kit.quiet import retries_held_back

NETWORK_HINT = {
    "modelscope": "On AutoDL run `source /etc/network_turbo` first; check MODELSCOPE_ENDPOINT if you set it.",
    "huggingface": "On AutoDL run `source /etc/network_turbo` first; or set HF_ENDPOINT to a mirror "
                   "(e.g. https://hf-mirror.com); or use ModelScope (source: modelscope).",
}
FREE_SPACE_MARGIN = 1 << 30  # keep 1 GiB spare: a full data disk breaks checkpoints too


class HubError(KitError, RuntimeError):
    """A download problem, explained in one sentence."""


class RepoNotFound(HubError):
    pass


class NetworkUnreachable(HubError):
    pass


class DiskFull(HubError):
    pass


class ChecksumMismatch(HubError):
    pass


class IncompleteDownload(HubError):
    pass


def catalog_table() -> str:
    """The models the kit knows as a printed table: the repo to train on and the 16-bit base an export merges into."""
    lines = [f"{'model':<29}{'train on (dynamic 4-bit)':<46}16-bit base (export)"]
    for p in PROFILES.values():
        why = "not trained here: a MoE" if "MoE" in p.refused else "not trained here: no thinking switch"
        lines.append(f"{p.name:<29}{why if p.refused else p.repo('dynamic_4bit'):<46}{p.repo('base_16bit')}")
    return "\n".join(lines)


@dataclass
class Download:
    path: Path
    repo_id: str
    source: str
    files: int
    bytes: int
    cached: bool  # True when a verified copy was found and nothing was fetched


def resolve_repo(name: str, variant: str = "dynamic_4bit") -> str:
    """`Qwen3-14B` (or `qwen3-14b`, `14B`) -> the repo id of that variant; an `owner/name` id passes through. Raises
    RepoNotFound with close matches, or why the kit does not train a model it knows."""
    if variant not in VARIANTS:
        raise ValueError(f"variant '{variant}' is not one of {', '.join(VARIANTS)}.")
    if "/" in name:
        return name
    profile = find(name)
    if profile is None:
        near = nearest(name)
        raise RepoNotFound(f"unknown model '{name}'; " + (f"did you mean {', '.join(near)}?" if near else
                                                          f"known: {', '.join(PROFILES)}."))
    if profile.refused and variant != "base_16bit":  # its 16-bit weights stay downloadable, for other tools
        raise RepoNotFound(f"{profile.name} {profile.refused}.")
    return profile.repo(variant)


def model_folder(repo_id: str, source: str = "modelscope", cache_dir: str = "", revision: str = "") -> Path:
    """Where a repo's files live in the kit's cache: one folder per revision asked for ("" = the default branch)."""
    name = repo_id.replace("/", "--") + (f"@{revision}" if revision else "")
    return cache_root(cache_dir) / "models" / source / name


def content_id(files: list[dict]) -> str:
    """What a listing holds (each file's path, size and sha256), as a short hash: changes when the repo does."""
    entries = sorted((f["path"], f["size"], f.get("sha256") or "") for f in files)
    return hashlib.sha256(json.dumps(entries).encode()).hexdigest()[:16]


def _read_manifest(manifest: Path) -> list[dict] | None:
    """The files a complete download recorded; None without a readable manifest (the download is verified afresh)."""
    try:
        return json.loads(manifest.read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _manifest_path(folder: Path, patterns: list[str] | None) -> Path:
    key = hashlib.sha256(json.dumps(sorted(patterns or [])).encode()).hexdigest()[:12]
    return folder / f".kit-complete-{key}.json"


def listing(repo_id: str, source: str, *, repo_type: str = "model", revision: str = "", token: str = "") -> list[dict]:
    """Every file of a model or data set repo as the hub lists it now (path, size, sha256); HubError in one sentence."""
    endpoint = hub_endpoint(source)
    try:
        if source == "modelscope":
            from modelscope_hub.api import HubApi

            files = HubApi(endpoint=endpoint, token=token or None).list_repo_files(
                repo_id, repo_type, revision=revision or None)
            return [{"path": f.path, "size": f.size, "sha256": f.sha256} for f in files if not f.is_dir]
        from huggingface_hub import HfApi

        entries = HfApi(endpoint=endpoint, token=token or None).list_repo_tree(
            repo_id, repo_type=repo_type, recursive=True, revision=revision or None)
        return [{"path": e.path, "size": e.size, "sha256": e.lfs.sha256 if e.lfs else None}
                for e in entries if hasattr(e, "size")]
    except Exception as e:
        raise explain_error(e, repo_id, source, endpoint) from None


def hub_endpoint(source: str) -> str | None:
    """The endpoint the user set (MODELSCOPE_ENDPOINT, HF_ENDPOINT), read at each call: the clients cache theirs."""
    return os.environ.get("MODELSCOPE_ENDPOINT" if source == "modelscope" else "HF_ENDPOINT") or None


def _classes(*dotted: str) -> tuple[type, ...]:
    """Exception classes by `module.Name`, skipping those whose library is not installed here."""
    from importlib import import_module

    found = []
    for name in dotted:
        module, _, attr = name.rpartition(".")
        try:
            found.append(getattr(import_module(module), attr))
        except (ImportError, AttributeError):
            pass
    return tuple(found)


NOT_FOUND = ("huggingface_hub.errors.RepositoryNotFoundError", "huggingface_hub.errors.RevisionNotFoundError",
             "huggingface_hub.errors.RemoteEntryNotFoundError", "modelscope_hub.errors.NotExistError")
UNREACHABLE = ("requests.ConnectionError", "requests.Timeout", "httpx.TransportError", "urllib3.exceptions.HTTPError",
               "modelscope_hub.errors.NetworkError", "socket.gaierror")


def _causes(error: BaseException):
    """The error and what it was raised from or during: clients wrap network errors in their own."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__


def explain_error(error: Exception, repo_id: str, source: str, endpoint: str | None) -> Exception:
    """A hub client's exception as one sentence: not found (with suggestions), unreachable (with the fix), other.
    Judged by the exception classes of the clients (and of requests/httpx beneath them), not their messages."""
    where = "ModelScope" if source == "modelscope" else "Hugging Face"
    chain = list(_causes(error))
    status = next((getattr(getattr(e, "response", None), "status_code", None) for e in chain
                   if getattr(e, "response", None) is not None), None)
    if any(isinstance(e, _classes(*NOT_FOUND)) for e in chain) or status == 404:
        near = nearest(repo_id.split("/")[-1].split("-unsloth")[0].split("-bnb")[0])
        hint = f" Did you mean {', '.join(resolve_repo(n) for n in near)}?" if near else ""
        return RepoNotFound(f"'{repo_id}' was not found on {where}.{hint}")
    if any(isinstance(e, (ConnectionError, TimeoutError, *_classes(*UNREACHABLE))) for e in chain):
        return NetworkUnreachable(f"cannot reach {where} ({endpoint or 'default endpoint'}) for '{repo_id}'. "
                                  + NETWORK_HINT[source])
    return HubError(f"downloading '{repo_id}' from {where} failed: {type(error).__name__}: "
                    f"{str(error).splitlines()[0] if str(error) else ''}")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 24):
            digest.update(chunk)
    return digest.hexdigest()


def verify(folder: Path, files: list[dict], *, check_sha256: bool = True) -> None:
    """Every listed file present with its size (and sha256): else remove bad files and raise."""
    missing = [f["path"] for f in files if not (folder / f["path"]).is_file()]
    if missing:
        raise IncompleteDownload(f"{len(missing)} of {len(files)} files are missing in {folder} "
                                 f"({', '.join(missing[:5])}); run the download again to fetch them.")
    for f in files:
        path = folder / f["path"]
        size = path.stat().st_size
        bad = size != f["size"] if f["size"] else False
        bad = bad or bool(check_sha256 and f.get("sha256") and _sha256(path) != f["sha256"])
        if bad:
            path.unlink()
            raise ChecksumMismatch(f"{f['path']} is corrupt (size or sha256 differs from the hub's listing) and was "
                                   "removed; run the download again to fetch it.")


def _check_space(folder: Path, files: list[dict]) -> None:
    needed = sum(f["size"] for f in files
                 if not ((folder / f["path"]).is_file() and (folder / f["path"]).stat().st_size == f["size"]))
    probe = folder
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if needed + FREE_SPACE_MARGIN > free:
        raise DiskFull(f"the download needs {needed / 1e9:.1f} GB but only {free / 1e9:.1f} GB is free on {probe}; "
                       "free space or set model.cache_dir to a bigger disk (AutoDL: /root/autodl-tmp).")


def download_model(name: str, *, source: str = "modelscope", variant: str = "dynamic_4bit", cache_dir: str = "",
                   revision: str = "", allow_patterns: list[str] | None = None, token: str = "") -> Download:
    """Download (or find) a model repo and return its verified local folder.

    `name`: `Qwen3-14B` or a repo id; `source`: modelscope | huggingface; `variant`: dynamic_4bit (train) | bnb_4bit
    | base_16bit (merge); `allow_patterns`: only matching files. Raises HubError subclasses, one sentence each."""
    repo_id = resolve_repo(name, variant)
    folder = model_folder(repo_id, source, cache_dir, revision)
    manifest = _manifest_path(folder, allow_patterns)
    if (files := _read_manifest(manifest)) is not None:
        try:
            verify(folder, files, check_sha256=False)  # sizes only: hashing 60 GB on every start is too slow
            return Download(folder, repo_id, source, len(files), sum(f["size"] for f in files), cached=True)
        except HubError:
            pass
    manifest.unlink(missing_ok=True)
    from huggingface_hub.utils import filter_repo_objects  # the same pattern rules the clients apply

    endpoint = hub_endpoint(source)
    with retries_held_back():  # the client's retry warnings are news only when the download fails in the end
        files = list(filter_repo_objects(listing(repo_id, source, revision=revision, token=token),
                                         allow_patterns=allow_patterns, key=lambda f: f["path"]))
        folder.mkdir(parents=True, exist_ok=True)
        _check_space(folder, files)
        _snapshot(repo_id, source, folder, revision=revision, allow_patterns=allow_patterns, token=token,
                  endpoint=endpoint)
    verify(folder, files)
    write_atomic(manifest, json.dumps({"repo_id": repo_id, "source": source, "revision": revision,
                                       "content": content_id(files), "files": files}, indent=1))
    return Download(folder, repo_id, source, len(files), sum(f["size"] for f in files), cached=False)


def _snapshot(repo_id: str, source: str, folder: Path, *, revision: str, allow_patterns: list[str] | None,
              token: str, endpoint: str | None, repo_type: str = "model") -> None:
    """The hub client's own resumable download into `folder`; its failures as the kit's one-sentence errors."""
    if source == "modelscope":
        from modelscope import snapshot_download
    else:
        from huggingface_hub import snapshot_download
    try:
        snapshot_download(repo_id, revision=revision or None, local_dir=str(folder), endpoint=endpoint,
                          allow_patterns=allow_patterns, token=token or None, repo_type=repo_type)
    except OSError as e:
        if e.errno == 28:  # ENOSPC
            raise DiskFull(f"the disk holding {folder} filled up during the download; free space and run it again "
                           "(finished files are kept).") from None
        raise explain_error(e, repo_id, source, endpoint) from None
    except Exception as e:
        failed = getattr(e, "failed_files", None)  # modelscope's FileDownloadError: the others finished
        if not failed:
            raise explain_error(e, repo_id, source, endpoint) from None
        corrupt = sorted(p for p, err in failed.items() if "Integrity" in type(err).__name__)
        for path in corrupt:
            (folder / path).unlink(missing_ok=True)
        if corrupt:
            raise ChecksumMismatch(f"{', '.join(corrupt)} arrived corrupt (sha256 differs from the hub's listing) "
                                   "and was removed; run the download again to fetch it.") from None


def resolve_model(model, variant: str = "") -> Path:
    """The local folder of a `ModelConfig`: the tiny default, a local folder, or a download. `variant` defaults to
    what training needs; `base_16bit` (export) resolves any Qwen3 repo to Qwen/Qwen3-<size> and refuses 4-bit
    weights."""
    if model.name == "tiny":
        from kit.models.tiny import build_tiny_model

        return build_tiny_model()
    variant = variant or ("dynamic_4bit" if model.load_in_4bit else "base_16bit")
    folder = Path(model.name).expanduser()
    if not folder.is_dir():
        if model.source == "local":
            raise HubError(f"model.name '{model.name}' is not a folder, and model.source is local.")
        known = find(model.name)
        name = known.name if known and variant == "base_16bit" else model.name
        folder = download_model(name, source=model.source, variant=variant, cache_dir=model.cache_dir,
                                revision=model.revision, token=model.token).path
    if variant == "base_16bit" and "quantization_config" in json.loads((folder / "config.json").read_text()):
        raise HubError(f"{folder} holds 4-bit weights; merging into dequantized 4-bit weights loses accuracy. "
                       "Point model.name at the 16-bit base (e.g. `python scripts/download.py Qwen3-14B "
                       "--variant base_16bit`).")
    return folder


DATA_SUFFIXES = (".jsonl", ".json", ".parquet")


def _dataset_folder(src, cache_dir: Path) -> Path:
    """Where a hub data set's files (and its listing) are kept: one folder per revision asked for."""
    return cache_dir / src.where / (src.path + (f"@{src.revision}" if src.revision else ""))


def dataset_listing(src, cache_dir: Path) -> list[dict]:
    """A hub data set's listing, saved beside its shards; the saved one (said) where the hub cannot be reached."""
    saved = _dataset_folder(src, cache_dir) / ".kit-listing.json"
    try:
        files = listing(src.path, src.where, repo_type="dataset", revision=src.revision)
    except NetworkUnreachable as error:
        if not saved.is_file():
            raise _maybe_a_path(error, src) from None
        print(f"note: {error} Using the listing saved on {time.ctime(saved.stat().st_mtime)}.")
        return json.loads(saved.read_text())
    except HubError as error:
        raise _maybe_a_path(error, src) from None
    write_atomic(saved, json.dumps(files))
    return files


def _maybe_a_path(error: HubError, src) -> HubError:
    """A hub error for a path that hub: auto took for a data set id only because no such file is here: a mistyped
    local path (`data/my_skill` for `data/my_skill.jsonl`) must not read as a network or hub problem alone."""
    if src.hub != "auto":
        return error
    return type(error)(f"{error} (No file or folder {shown(src.path)} exists either, so it was read as a data set "
                       "id: if it is a local path, correct it.)")


def split_shards(src, files: list[dict]) -> list[dict]:
    """The listed data files of the source's split (and subset), in order; a DataError naming the files when none is."""
    from kit.data.formats import DataError

    data = [f for f in files if Path(f["path"]).suffix in DATA_SUFFIXES
            and (not src.subset or f"/{src.subset}/" in f"/{f['path']}")]
    named = [f for f in data if Path(f["path"]).name.startswith(f"{src.split}-") or f"/{src.split}/" in
             f"/{f['path']}" or Path(f["path"]).stem == src.split]
    chosen = sorted(named or (data if src.split in ("", "train") else []), key=lambda f: f["path"])
    if not chosen:
        shown = [f["path"] for f in files[:8]]
        raise DataError(f"{src.where} data set '{src.path}' has no data files for split '{src.split}' "
                        f"(files: {', '.join(shown)}{'...' if len(files) > 8 else ''}).")
    return chosen


def dataset_files(src, cache_dir: Path):
    """The split's files, each fetched by the hub's client when the stream reaches it; a complete copy is used as is."""
    folder = _dataset_folder(src, cache_dir)
    for shard in split_shards(src, dataset_listing(src, cache_dir)):
        local = folder / shard["path"]
        if not (local.is_file() and local.stat().st_size == shard["size"]):
            _snapshot(src.path, src.where, folder, revision=src.revision, allow_patterns=[shard["path"]], token="",
                      endpoint=hub_endpoint(src.where), repo_type="dataset")
        yield local
