import json

from botocore.eventstream import EventStreamBuffer

from outcrop.server.bedrock import eventstream


def test_frames_decode_with_botocore():
    data = eventstream.event("messageStart", {"role": "assistant"}) + eventstream.exception(
        "throttlingException", {"message": "slow down"})
    buffer = EventStreamBuffer()
    for i in range(0, len(data), 7):  # arbitrary network chunking
        buffer.add_data(data[i:i + 7])
    messages = list(buffer)
    assert messages[0].headers[":event-type"] == "messageStart"
    assert json.loads(messages[0].payload) == {"role": "assistant"}
    assert messages[1].headers[":message-type"] == "exception"
    assert messages[1].headers[":exception-type"] == "throttlingException"
