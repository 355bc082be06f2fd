"""Raw prompts written for other models' templates, turned back into messages.

A prompt in Llama 3, Llama 2 / Mistral [INST], Claude "Human:/Assistant:" or Titan "User:/Bot:"
form is split into turns so the local model answers through its *own* chat template.
"""

from __future__ import annotations

import re

from outcrop.types import Message, TextBlock

_LLAMA3 = re.compile(r"<\|start_header_id\|>(\w+)<\|end_header_id\|>\s*(.*?)(?:<\|eot_id\|>|$)", re.S)
_INST = re.compile(r"\[INST\](.*?)\[/INST\]([^\[]*)", re.S)
_SYS = re.compile(r"<<SYS>>(.*?)<</SYS>>", re.S)
_HUMAN = re.compile(r"(?:^|\n\n)(Human|Assistant):", re.S)
_TITAN = re.compile(r"(?:^|\n)(User|Bot):", re.S)


def prompt_to_messages(prompt: str) -> tuple[list[str], list[Message]]:
    """(system prompts, messages) recovered from a templated prompt; plain text is one user turn."""
    for parse in (_llama3, _inst, _turns(_HUMAN, {"Human": "user", "Assistant": "assistant"}),
                  _turns(_TITAN, {"User": "user", "Bot": "assistant"})):
        found = parse(prompt)
        if found is not None and found[1]:
            return found
    return [], [Message("user", [TextBlock(prompt.strip() or prompt)])]


def _llama3(prompt: str) -> tuple[list[str], list[Message]] | None:
    turns = _LLAMA3.findall(prompt)
    if not turns:
        return None
    system = [t.strip() for role, t in turns if role == "system"]
    messages = [Message("assistant" if role == "assistant" else "user", [TextBlock(t.strip())])
                for role, t in turns if role != "system" and t.strip()]
    return system, messages


def _inst(prompt: str) -> tuple[list[str], list[Message]] | None:
    pairs = _INST.findall(prompt)
    if not pairs:
        return None
    system: list[str] = []
    messages: list[Message] = []
    for user, answer in pairs:
        sys_match = _SYS.search(user)
        if sys_match:
            system.append(sys_match.group(1).strip())
            user = _SYS.sub("", user)
        messages.append(Message("user", [TextBlock(user.strip())]))
        answer = answer.replace("</s>", "").replace("<s>", "").strip()
        if answer:
            messages.append(Message("assistant", [TextBlock(answer)]))
    return system, messages


def _turns(pattern: re.Pattern[str], roles: dict[str, str]):  # type: ignore[no-untyped-def]
    def parse(prompt: str) -> tuple[list[str], list[Message]] | None:
        parts = pattern.split(prompt)
        if len(parts) < 3:
            return None
        system = [parts[0].strip()] if parts[0].strip() else []
        messages = []
        for speaker, text in zip(parts[1::2], parts[2::2], strict=False):
            if text.strip():
                messages.append(Message(roles[speaker], [TextBlock(text.strip())]))  # type: ignore[arg-type]
        if messages and messages[-1].role == "assistant":
            # A prefilled answer: the model continues it. Local templates cannot prefill, so fold it in.
            prefill = messages.pop().text
            if messages:
                messages[-1].content.append(TextBlock(f"\n(Begin your answer with: {prefill})"))
        return system, messages

    return parse
