"""RetrieveAndGenerate(+Stream): retrieve, prompt a chat model with the results, cite, keep the session.

Citations are attributed after generation, not asked of the model: each sentence of the answer is matched
to the retrieved passage it is closest to under the knowledge base's embedding model, and consecutive
sentences citing the same passage form one cited part with its character span in the answer.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np

from outcrop.core.accounts import caller_of
from outcrop.core.catalog import normalize_model_id
from outcrop.core.governance import CallContext
from outcrop.core.inference import InferenceService
from outcrop.core.kms import KeyService
from outcrop.core.knowledge.chunking import chunk_document, validate_chunking
from outcrop.core.knowledge.documents import MIME_SUFFIX
from outcrop.core.knowledge.parsing import parse
from outcrop.core.knowledge.retrieval import Passage, RetrievalService
from outcrop.errors import Invalid, NotFound
from outcrop.storage.repositories import AccountScope
from outcrop.storage.tables import RagSession
from outcrop.types import ChatRequest, Finished, InferenceConfig, Message, TextBlock, TextDelta
from outcrop.vectorstores.keyword import tokenize

if TYPE_CHECKING:
    from outcrop.core.guardrails.runtime import GuardConfig, Guarded, Guardrails

DEFAULT_TEMPLATE = (
    "You are a question answering agent. I will provide you with a set of search results. The user will provide "
    "you with a question. Your job is to answer the user's question using only information from the search "
    "results. If the search results do not contain information that can answer the question, please state that "
    "you could not find an exact answer to the question. Answer briefly.\n\n"
    "Here are the search results in numbered order:\n$search_results$\n\n$output_format_instructions$")
SESSION_TTL = timedelta(hours=24)
CITE_THRESHOLD = 0.45  # support (see _support) below which a sentence is left uncited
_SENTENCE = re.compile(r"[^.!?\n]+(?:[.!?]+|\n|$)")


@dataclass
class Prepared:
    session_id: str
    request: ChatRequest
    passages: list[Passage]
    embedding_model: str
    question: str
    history: list[list[str]]
    guard: GuardConfig | None = None


class GenerationService:
    def __init__(self, retrieval: RetrievalService, inference: InferenceService, keys: KeyService) -> None:
        self.retrieval = retrieval
        self.inference = inference
        self.keys = keys
        self.sessions = keys.sessions
        self.guardrails: Guardrails | None = None  # set once the guardrails are built (they embed through us)

    def _guarded(self, prepared: Prepared) -> Guarded:
        """The question is guarded; the passages and the question ground the answer (contextual grounding)."""
        from outcrop.core.guardrails.engine import GROUNDING_SOURCE, QUERY, TextUnit
        from outcrop.core.guardrails.runtime import Guarded

        units = [TextUnit(prepared.question), TextUnit(prepared.question, frozenset({QUERY})),
                 TextUnit("\n".join(p.text for p in prepared.passages), frozenset({GROUNDING_SOURCE}))]
        return Guarded(units, [None] * len(units))

    async def answer(self, ctx: CallContext, body: dict[str, Any]) -> dict[str, Any]:
        prepared = await asyncio.to_thread(self.prepare, ctx, body)
        invoke = replace(ctx, operation="InvokeModel")
        if prepared.guard is not None and self.guardrails is not None:
            response = await self.guardrails.guard_chat(invoke, prepared.request, prepared.guard,
                                                        self._guarded(prepared))
        else:
            response = await self.inference.chat(invoke, prepared.request)
        text = "".join(b.text for b in response.content if isinstance(b, TextBlock)).strip()
        out: dict[str, Any] = {"output": {"text": text}, "sessionId": prepared.session_id}
        if prepared.guard is not None:
            intervened = response.stop_reason == "guardrail_intervened"
            out["guardrailAction"] = "INTERVENED" if intervened else "NONE"
            if intervened:
                out["citations"] = []
                return out
        out["citations"] = await asyncio.to_thread(self.cite, prepared, text)
        await asyncio.to_thread(self._remember, ctx, prepared, text)
        return out

    async def answer_stream(self, ctx: CallContext, body: dict[str, Any]) -> tuple[str, AsyncIterator[dict[str, Any]]]:
        prepared = await asyncio.to_thread(self.prepare, ctx, body)
        invoke = replace(ctx, operation="InvokeModelWithResponseStream")
        if prepared.guard is not None and self.guardrails is not None:
            stream = self.guardrails.guard_stream(invoke, prepared.request, prepared.guard, self._guarded(prepared))
        else:
            stream = self.inference.chat_stream(invoke, prepared.request)

        async def events() -> AsyncIterator[dict[str, Any]]:
            parts: list[str] = []
            intervened = False
            async for event in stream:
                if isinstance(event, TextDelta) and event.text:
                    parts.append(event.text)
                    yield {"output": {"text": event.text}}
                elif isinstance(event, Finished):
                    intervened = event.stop_reason == "guardrail_intervened"
            text = "".join(parts).strip()
            if not parts:
                yield {"output": {"text": ""}}  # an empty answer is still an answer (and a started stream)
            if prepared.guard is not None:
                yield {"guardrail": {"action": "INTERVENED" if intervened else "NONE"}}
                if intervened:
                    return
            for citation in await asyncio.to_thread(self.cite, prepared, text):
                yield {"citation": {**citation, "citation": citation}}
            await asyncio.to_thread(self._remember, ctx, prepared, text)

        return prepared.session_id, events()

    # -- preparation ----------------------------------------------------------------------------------

    def prepare(self, ctx: CallContext, body: dict[str, Any]) -> Prepared:
        question = (body.get("input") or {}).get("text")
        if not isinstance(question, str) or not question.strip():
            raise Invalid("input.text is required")
        config = body.get("retrieveAndGenerateConfiguration") or {}
        kind = config.get("type")
        session_id, history = self._session(ctx, body.get("sessionId"))
        if kind == "KNOWLEDGE_BASE":
            kb_config = config.get("knowledgeBaseConfiguration") or {}
            kb_id = kb_config.get("knowledgeBaseId")
            if not isinstance(kb_id, str):
                raise Invalid("knowledgeBaseConfiguration.knowledgeBaseId is required")
            passages = self.retrieval.retrieve(ctx, kb_id, {"text": question}, kb_config.get("retrievalConfiguration"),
                                               extra_action="bedrock:Retrieve")
            kb = self.retrieval.bases.row(ctx, kb_id)
            embedding = json.loads(kb.configuration)["vectorKnowledgeBaseConfiguration"]["embeddingModelArn"]
        elif kind == "EXTERNAL_SOURCES":
            kb_config = config.get("externalSourcesConfiguration") or {}
            embedding = self.retrieval.settings.default_embedding_model
            passages = self._external(kb_config.get("sources"), question, embedding)
        else:
            raise Invalid("retrieveAndGenerateConfiguration.type must be KNOWLEDGE_BASE or EXTERNAL_SOURCES")
        model = kb_config.get("modelArn")
        if not isinstance(model, str):
            raise Invalid("modelArn is required")
        generation = kb_config.get("generationConfiguration") or {}
        from outcrop.core.guardrails.runtime import GuardConfig

        guard = GuardConfig.parse(generation.get("guardrailConfiguration"), "generationConfiguration.guardrailConfiguration")
        request = self._request(normalize_model_id(model), generation, question, passages, history)
        return Prepared(session_id, request, passages, embedding, question, history, guard)

    def _request(self, model_id: str, generation: dict[str, Any], question: str, passages: list[Passage],
                 history: list[list[str]]) -> ChatRequest:
        template = (generation.get("promptTemplate") or {}).get("textPromptTemplate") or DEFAULT_TEMPLATE
        if "$search_results$" not in template:
            raise Invalid("promptTemplate.textPromptTemplate must contain $search_results$")
        results = "\n".join(f"<search_result index=\"{i}\">\n{p.text}\n</search_result>"
                            for i, p in enumerate(passages, 1)) or "(no search results)"
        prompt = template.replace("$search_results$", results).replace("$output_format_instructions$", "")
        messages: list[Message] = []
        for asked, answered in history[-5:]:
            messages += [Message("user", [TextBlock(asked)]), Message("assistant", [TextBlock(answered)])]
        if "$query$" in prompt:
            prompt = prompt.replace("$query$", question)
            messages.append(Message("user", [TextBlock(prompt)]))
            system: list[str] = []
        else:
            messages.append(Message("user", [TextBlock(question)]))
            system = [prompt]
        text_config = (generation.get("inferenceConfig") or {}).get("textInferenceConfig") or {}
        config = InferenceConfig(max_tokens=text_config.get("maxTokens", 512),
                                 temperature=text_config.get("temperature", 0.0), top_p=text_config.get("topP"),
                                 stop=list(text_config.get("stopSequences") or []))
        return ChatRequest(model_id, messages, system, config)

    def _external(self, sources: Any, question: str, embedding: str) -> list[Passage]:
        if not isinstance(sources, list) or not 1 <= len(sources) <= 1:
            raise Invalid("externalSourcesConfiguration.sources must hold exactly one source")
        passages: list[tuple[str, dict[str, Any]]] = []
        for source in sources:
            if source.get("sourceType") != "BYTE_CONTENT":
                raise Invalid("external sources: only BYTE_CONTENT is supported (S3 sources: use a knowledge base)")
            content = source.get("byteContent") or {}
            suffix = MIME_SUFFIX.get(content.get("contentType", ""))
            if suffix is None:
                raise Invalid(f"byteContent.contentType {content.get('contentType')!r} is not supported")
            try:
                data = base64.b64decode(content.get("data", ""), validate=True) \
                    if isinstance(content.get("data"), str) else bytes(content.get("data", b""))
            except (binascii.Error, ValueError) as exc:
                raise Invalid("byteContent.data is not valid base64") from exc
            identifier = content.get("identifier", "document")
            for chunk in chunk_document(parse("document" + suffix, data), validate_chunking(None)):
                passages.append((chunk.text, {"identifier": identifier}))
        if not passages:
            raise Invalid("the external source has no text")
        vectors = self.retrieval.embedder.embed(embedding, [question, *(t for t, _ in passages)])
        scores = (1.0 + vectors[1:] @ vectors[0]) / 2.0
        order = np.argsort(-scores)[:5]
        return [Passage(passages[i][0], float(scores[i]), {},
                        {"type": "CUSTOM", "customDocumentLocation": {"id": passages[i][1]["identifier"]}})
                for i in order]

    # -- citations ------------------------------------------------------------------------------------

    def cite(self, prepared: Prepared, text: str) -> list[dict[str, Any]]:
        sentences = [(m.start(), m.end()) for m in _SENTENCE.finditer(text) if text[m.start():m.end()].strip()]
        if not sentences or not prepared.passages:
            return []
        similarity = self._support(prepared, [text[s:e] for s, e in sentences])
        best = similarity.argmax(axis=1)
        parts: list[tuple[int, int, int]] = []  # start, end, passage
        for (start, end), choice, row in zip(sentences, best, similarity, strict=True):
            passage = int(choice) if row[choice] >= CITE_THRESHOLD else -1
            if parts and parts[-1][2] == passage:
                parts[-1] = (parts[-1][0], end, passage)
            else:
                parts.append((start, end, passage))
        citations = []
        for start, end, passage in parts:
            while end > start and text[end - 1].isspace():
                end -= 1
            references = [] if passage < 0 else [self._reference(prepared.passages[passage])]
            citations.append({"generatedResponsePart": {"textResponsePart": {
                "text": text[start:end], "span": {"start": start, "end": end - 1}}},
                "retrievedReferences": references})
        return citations

    def _support(self, prepared: Prepared, sentences: list[str]) -> np.ndarray:
        """How well each passage supports each sentence: embedding similarity, averaged with the share of the
        sentence's words the passage contains (a bare "23" embeds poorly, but its number is in one passage)."""
        passages = [p.text for p in prepared.passages]
        vectors = self.retrieval.embedder.embed(prepared.embedding_model, sentences + passages)
        semantic = (1.0 + vectors[: len(sentences)] @ vectors[len(sentences):].T) / 2.0
        words = [set(_words(p)) for p in passages]
        lexical = np.zeros_like(semantic)
        for i, sentence in enumerate(sentences):
            wanted = set(_words(sentence))
            if wanted:
                lexical[i] = [len(wanted & found) / len(wanted) for found in words]
        return (semantic + lexical) / 2.0  # type: ignore[no-any-return]

    @staticmethod
    def _reference(passage: Passage) -> dict[str, Any]:
        return {"content": {"text": passage.text, "type": "TEXT"}, "location": passage.location,
                "metadata": passage.metadata}

    # -- sessions -------------------------------------------------------------------------------------

    def _session(self, ctx: CallContext, session_id: Any) -> tuple[str, list[list[str]]]:
        if session_id is None:
            return str(uuid.uuid4()), []
        account = caller_of(ctx).account_id
        with self.sessions() as session:
            row = AccountScope(session, account).get(RagSession, str(session_id))
            if row is None or row.updated_at.replace(tzinfo=UTC) < datetime.now(UTC) - SESSION_TTL:
                raise NotFound(f"Session {session_id} does not exist or has expired")
            history = json.loads(self.keys.open(account, row.sealed, f"rag-session:{row.id}"))
        return row.id, history

    def _remember(self, ctx: CallContext, prepared: Prepared, answer: str) -> None:
        account = caller_of(ctx).account_id
        history = [*prepared.history, [prepared.question, answer]][-20:]
        sealed = self.keys.seal(account, json.dumps(history).encode(), f"rag-session:{prepared.session_id}")
        now = datetime.now(UTC)
        with self.sessions.begin() as session:
            scope = AccountScope(session, account)
            row = scope.get(RagSession, prepared.session_id)
            if row is None:
                scope.add(RagSession(id=prepared.session_id, sealed=sealed, created_at=now, updated_at=now))
            else:
                row.sealed, row.updated_at = sealed, now


def _words(text: str) -> list[str]:
    return [w for w in tokenize(text) if len(w) > 1 or w.isdigit()]
