"""A checkpoint's default search: ``config.json``'s decoding section, with the LM files it names loaded.

Errors raise ``CheckpointError`` naming the file, as the model's own loading does.
"""

from __future__ import annotations

from pathlib import Path

from safetensors import SafetensorError

from server.model.checkpoint import DEFAULT_MODEL_DIR, CheckpointError, load_model
from server.model.config import ModelConfig
from server.model.transducer import StreamingTransducer
from server.search.ngram_lm import TokenNgramLM
from server.search.options import Search, SearchOptions, SearchResources
from server.search.rescoring import WordLM

_UNREADABLE = (SafetensorError, OSError, ValueError, KeyError)


def load_search(model_dir: Path | str, config: ModelConfig, device: str = "cpu") -> Search:
    """The search the checkpoint's config.json asks for. The word LM stays on the CPU: it runs
    once per final result, on a few short sentences."""
    model_dir = Path(model_dir)
    decoding = config.decoding
    token_lm = word_lm = None
    if decoding.lm_file is not None:
        path = model_dir / decoding.lm_file
        if not path.is_file():
            raise CheckpointError(f"{path}: missing language model (config.json decoding.lm_file)")
        try:
            token_lm = TokenNgramLM.load(path).to(device)
        except _UNREADABLE as error:
            raise CheckpointError(f"{path}: unreadable language model ({error})") from error
        if token_lm.vocab_size != config.tokenizer.vocab_size:
            raise CheckpointError(
                f"{path}: LM vocabulary {token_lm.vocab_size} does not match the tokenizer's "
                f"{config.tokenizer.vocab_size}"
            )
    if decoding.rescoring is not None:
        path = model_dir / decoding.rescoring.word_lm_file
        if not path.is_file():
            raise CheckpointError(f"{path}: missing word language model (config.json decoding.rescoring.word_lm_file)")
        try:
            word_lm = WordLM.load(path)
        except _UNREADABLE as error:
            raise CheckpointError(f"{path}: unreadable word language model ({error})") from error
    return Search(SearchOptions.from_config(decoding), SearchResources(token_lm, word_lm))


def load_model_and_search(
    model_dir: Path | str = DEFAULT_MODEL_DIR, device: str = "cpu"
) -> tuple[StreamingTransducer, Search]:
    """A checkpoint's model and its default search (what its model card measured)."""
    model = load_model(model_dir, device)
    return model, load_search(model_dir, model.config, device)


def save_search_files(resources: SearchResources, config: ModelConfig, model_dir: Path | str) -> None:
    """Write the LM files ``config``'s decoding section names into ``model_dir``, where missing."""
    model_dir = Path(model_dir)
    decoding = config.decoding
    if decoding.lm_file is not None and resources.token_lm is not None and not (model_dir / decoding.lm_file).is_file():
        resources.token_lm.save(model_dir / decoding.lm_file)
    rescoring = decoding.rescoring
    if rescoring is not None and resources.word_lm is not None and not (model_dir / rescoring.word_lm_file).is_file():
        resources.word_lm.save(model_dir / rescoring.word_lm_file)
