from outcrop.server.bedrock.families.prompts import prompt_to_messages


def test_llama3_prompt():
    system, messages = prompt_to_messages(
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\nBe brief.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n")
    assert system == ["Be brief."]
    assert [(m.role, m.text) for m in messages] == [("user", "Hi")]


def test_inst_prompt_with_history():
    _, messages = prompt_to_messages("<s>[INST] One [/INST] Two</s><s>[INST] Three [/INST]")
    assert [(m.role, m.text) for m in messages] == [("user", "One"), ("assistant", "Two"), ("user", "Three")]


def test_claude_legacy_prompt():
    _, messages = prompt_to_messages("\n\nHuman: What is 2+2?\n\nAssistant:")
    assert [(m.role, m.text) for m in messages] == [("user", "What is 2+2?")]


def test_titan_prompt_and_plain_text():
    assert prompt_to_messages("User: hello\nBot:")[1][0].text == "hello"
    assert prompt_to_messages("Tell me a joke")[1][0].text == "Tell me a joke"
