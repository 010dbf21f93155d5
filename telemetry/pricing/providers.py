"""Provider-name normalisation and the model references tried for one (provider, model) pair.

Producers name providers in many ways: OpenTelemetry (`gen_ai.provider.name` = ``gcp.vertex_ai``,
``aws.bedrock``, ``azure.ai.openai``...), LiteLLM (``vertex_ai``, ``bedrock``, ``together_ai``...),
SDK names (``google-genai``) or free text (``AWS Bedrock``). :func:`normalize_provider` maps them to
the provider ids of `genai-prices` (``openai``, ``anthropic``, ``google``, ``aws``, ``azure``,
``mistral``, ``groq``, ``x-ai``...). Names it does not know come back cleaned (lower case, ``-``
separators) so that override entries can still match them.

:func:`lookup_candidates` lists the (provider, model reference) pairs to try, best first: the pair
as given, then with a ``provider/`` prefix stripped from the model (``openai/gpt-4o``,
``vertex_ai/gemini-2.0-flash``, ``models/gemini-1.5-pro``), then the model alone so that the
price source can infer the provider from the model name (``gpt-4o`` -> openai). Pure functions;
the genai-prices provider table is read once, lazily.
"""

from __future__ import annotations

import re
from functools import cache, lru_cache

__all__ = ["normalize_provider", "lookup_candidates", "known_provider_ids"]

# Keys are normalised the way _clean() does: lower case, runs of space/underscore/dot -> "-".
_ALIASES: dict[str, str] = {
    # OpenAI
    "openai": "openai", "openai-chat": "openai", "openai-responses": "openai", "oai": "openai",
    # Azure (OpenAI models on Azure, Azure AI inference)
    "azure": "azure", "azure-openai": "azure", "azureopenai": "azure", "azure-ai-openai": "azure",
    "az-ai-openai": "azure", "azure-ai": "azure", "azure-ai-inference": "azure",
    "az-ai-inference": "azure", "microsoft": "azure", "microsoft-azure": "azure",
    # Anthropic
    "anthropic": "anthropic", "claude": "anthropic",
    # Google: Gemini API and Vertex AI share one price list in genai-prices
    "google": "google", "gemini": "google", "google-genai": "google", "google-gla": "google",
    "google-vertex": "google", "google-ai-studio": "google", "googleai": "google", "vertex": "google",
    "vertex-ai": "google", "vertexai": "google", "vertex-ai-beta": "google", "gcp": "google",
    "gcp-vertex-ai": "google", "gcp-gemini": "google", "gcp-gen-ai": "google",
    # AWS Bedrock
    "aws": "aws", "bedrock": "aws", "aws-bedrock": "aws", "amazon-bedrock": "aws",
    "bedrock-converse": "aws", "amazon": "aws",
    # Others
    "mistral": "mistral", "mistralai": "mistral", "mistral-ai": "mistral", "codestral": "mistral",
    "groq": "groq",
    "xai": "x-ai", "x-ai": "x-ai", "grok": "x-ai",
    "deepseek": "deepseek",
    "cohere": "cohere", "cohere-chat": "cohere", "cohere-v2": "cohere",
    "together": "together", "together-ai": "together", "togetherai": "together",
    "fireworks": "fireworks", "fireworks-ai": "fireworks", "fireworksai": "fireworks",
    "perplexity": "perplexity", "perplexity-ai": "perplexity",
    "openrouter": "openrouter",
    "cerebras": "cerebras",
    "databricks": "databricks",
    "moonshot": "moonshotai", "moonshotai": "moonshotai", "moonshot-ai": "moonshotai",
    "voyage": "voyageai", "voyageai": "voyageai", "voyage-ai": "voyageai",
    "zhipu": "zhipuai", "zhipuai": "zhipuai", "z-ai": "zai", "zai": "zai",
}

# Bedrock model ids: "anthropic.claude-...", "us.anthropic.claude-...", "global.amazon.nova-..."
_BEDROCK_MODEL = re.compile(
    r"^(?:(?:us|eu|apac|ap|global|jp|au|ca|us-gov|regional)\.)?"
    r"(?:anthropic|amazon|meta|mistral|cohere|ai21|deepseek|openai|qwen|writer|twelvelabs)\.[a-z0-9]"
)
_SEPARATORS = re.compile(r"[\s_.]+")


def _clean(name: str) -> str:
    return _SEPARATORS.sub("-", name.strip().lower()).strip("-")


@cache
def known_provider_ids() -> frozenset[str]:
    """Provider ids of the bundled genai-prices data."""
    from genai_prices.data import providers

    return frozenset(p.id for p in providers)


@lru_cache(maxsize=1024)
def normalize_provider(name: str | None) -> str | None:
    """Map a provider name to a genai-prices provider id; unknown names come back cleaned.

    ``None`` or a blank name gives ``None``. Known aliases (see the module docstring) win; then an
    exact genai-prices id; then genai-prices' own provider matching (e.g. ``huggingface_together``);
    otherwise the cleaned name (``"Internal LLM"`` -> ``"internal-llm"``). Memoised (LRU, 1024).
    """
    if name is None:
        return None
    key = _clean(name)
    if not key:
        return None
    if key in _ALIASES:
        return _ALIASES[key]
    ids = known_provider_ids()
    if key in ids:
        return key
    raw = name.strip().lower()
    if raw in ids:  # ids with underscores, e.g. "huggingface_groq"
        return raw
    from genai_prices.data import providers
    from genai_prices.data_snapshot import find_provider_by_id

    found = find_provider_by_id(providers, raw) or find_provider_by_id(providers, key)
    return found.id if found is not None else key


def lookup_candidates(provider: str | None, model: str) -> list[tuple[str | None, str]]:
    """The (normalised provider or None, model reference) pairs to try for one request, best first.

    ``None`` as provider means "infer the provider from the model name". The provider in a pair
    may be a cleaned unknown name (useful to overrides; the genai-prices lookup skips it).
    """
    prov = normalize_provider(provider)
    ref = model.strip()
    pairs: list[tuple[str | None, str]] = [(prov, ref)]
    rest = last = ref
    if "/" in ref:
        prefix, rest = ref.split("/", 1)
        last = ref.rsplit("/", 1)[1]
        if prov is not None:
            pairs.append((prov, rest))
        pairs.append((normalize_provider(prefix), rest))
        if prov is not None:
            pairs.append((prov, last))
    if (prov is None or prov not in known_provider_ids()) and _BEDROCK_MODEL.match(last.lower()):
        pairs.append(("aws", last))
    pairs += [(None, ref), (None, rest), (None, last)]
    seen: set[tuple[str | None, str]] = set()
    out = []
    for p, m in pairs:
        if m and (p, m) not in seen:
            seen.add((p, m))
            out.append((p, m))
    return out
