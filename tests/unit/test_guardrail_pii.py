"""The guardrails' PII check on the real spaCy model and Presidio: every Bedrock type, exact spans, checksums."""

import socket
import threading

import pytest

pytest.importorskip("presidio_analyzer")
pytest.importorskip("spacy")

from outcrop.core.guardrails.checks.base import EntitySpan  # noqa: E402
from outcrop.core.guardrails.checks.pii import PresidioPii  # noqa: E402
from outcrop.settings import Settings  # noqa: E402

FOUND = [  # (Bedrock type, sentence, the exact text of the span)
    ("ADDRESS", "Please ship it to 742 Evergreen Terrace, Springfield, IL 62704 by Monday.",
     "742 Evergreen Terrace, Springfield, IL 62704"),
    ("AGE", "The patient is a 42-year-old man with a history of asthma.", "42-year"),
    ("NAME", "Yesterday Barack Obama visited the new factory.", "Barack Obama"),
    ("EMAIL", "Write to jane.doe@example.org for details.", "jane.doe@example.org"),
    ("PHONE", "Call me at (206) 555-0142 tomorrow.", "(206) 555-0142"),
    ("USERNAME", "My username is jdoe_1984.", "jdoe_1984"),
    ("PASSWORD", "The temporary password is Tr0ub4dor&3 so change it.", "Tr0ub4dor&3"),
    ("CREDIT_DEBIT_CARD_NUMBER", "Charge my Visa 4111 1111 1111 1111 please.", "4111 1111 1111 1111"),
    ("CREDIT_DEBIT_CARD_CVV", "The CVV is 737.", "737"),
    ("CREDIT_DEBIT_CARD_EXPIRY", "The card expires 09/28.", "09/28"),
    ("PIN", "My PIN is 4921.", "4921"),
    ("IP_ADDRESS", "The server at 10.0.12.7 is down.", "10.0.12.7"),
    ("URL", "See https://docs.example.com/setup for the steps.", "https://docs.example.com/setup"),
    ("MAC_ADDRESS", "Its MAC address is 3c:22:fb:97:0a:1e.", "3c:22:fb:97:0a:1e"),
    ("AWS_ACCESS_KEY", "aws_access_key_id = AKIAIOSFODNN7EXAMPLE", "AKIAIOSFODNN7EXAMPLE"),
    ("AWS_SECRET_KEY", "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
     "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
    ("US_SOCIAL_SECURITY_NUMBER", "My SSN is 536-22-8726.", "536-22-8726"),
    ("US_BANK_ACCOUNT_NUMBER", "Deposit it into account number 000123456789.", "000123456789"),
    ("US_BANK_ROUTING_NUMBER", "The routing number is 021000021.", "021000021"),
    ("US_PASSPORT_NUMBER", "My passport number is 963545637.", "963545637"),
    ("DRIVER_ID", "Driver's license number: D1234567.", "D1234567"),
    ("LICENSE_PLATE", "The car's license plate is 7XYZ123.", "7XYZ123"),
    ("VEHICLE_IDENTIFICATION_NUMBER", "The VIN is 1HGCM82633A004352.", "1HGCM82633A004352"),
    ("INTERNATIONAL_BANK_ACCOUNT_NUMBER", "Send it to IBAN DE89 3704 0044 0532 0130 00 today.",
     "DE89 3704 0044 0532 0130 00"),
    ("SWIFT_CODE", "Our SWIFT code is DEUTDEFF500.", "DEUTDEFF500"),
    ("US_INDIVIDUAL_TAX_IDENTIFICATION_NUMBER", "My ITIN is 912-70-1234.", "912-70-1234"),
    ("CA_SOCIAL_INSURANCE_NUMBER", "My social insurance number is 130 692 544.", "130 692 544"),
    ("CA_HEALTH_NUMBER", "Her OHIP number is 1234-567-890-AB.", "1234-567-890-AB"),
    ("UK_NATIONAL_HEALTH_SERVICE_NUMBER", "His NHS number is 943 476 5919.", "943 476 5919"),
    ("UK_NATIONAL_INSURANCE_NUMBER", "My National Insurance number is AB123456C.", "AB123456C"),
    ("UK_UNIQUE_TAXPAYER_REFERENCE_NUMBER", "Quote your UTR 12345 67890 on the form.", "12345 67890"),
]


def _fail(*args, **kwargs):
    raise AssertionError("the PII check tried the network")


@pytest.fixture(scope="module")
def check(tmp_path_factory):
    pii = PresidioPii(Settings(home=tmp_path_factory.mktemp("home")))
    with pytest.MonkeyPatch.context() as mp:  # loading and a first email (tldextract) stay offline
        mp.setattr(socket.socket, "connect", _fail)
        mp.setattr(socket, "create_connection", _fail)
        pii.warm()
        assert pii.find("mail bob@example.co.uk", {"EMAIL"})
    return pii


def spans(check, text, types=None):
    return [(s.type, text[s.start : s.end]) for s in check.find(text, types or check.entities)]


def test_covers_bedrock_types(check):
    assert {t for t, _, _ in FOUND} <= check.entities


@pytest.mark.parametrize(("kind", "text", "value"), FOUND, ids=[f[0] for f in FOUND])
def test_finds_each_type_with_its_exact_span(check, kind, text, value):
    assert (kind, value) in spans(check, text)


def test_clean_text_finds_nothing(check):
    assert spans(check, "The weather was mild, so we walked along the river for an hour and then had tea.") == []


@pytest.mark.parametrize("text", [
    "Rotate the part 90 degrees and turn 45 more.",  # not ages
    "Revenue grew 12% in 2023 to 1 000 000 units.",  # not phone numbers
    "The meeting moved from 10:30 to 11:45 on 2024-05-14.",
    "Version 3.10.12 fixed the bug in config.yaml.",  # not a URL
    "Our office works with ACME Co.Ltd. on logistics.",
    "I need a password reset link.",  # no password
])
def test_look_alikes_stay_quiet(check, text):
    assert spans(check, text) == []


def test_a_phone_number_passing_mod_11_is_still_a_phone_number(check):
    assert spans(check, "Fax it to 2601515325 please.") == [("PHONE", "2601515325")]


def test_checksums_reject_invalid_numbers(check):
    assert spans(check, "Charge my Visa 4111 1111 1111 1112 please.") == []  # Luhn fails
    assert spans(check, "Send it to IBAN GB82WEST12345698765431 today.") == []  # mod-97 fails
    assert spans(check, "The routing number is 021000022.") == []  # ABA checksum fails
    assert spans(check, "The part number is 1HGCM82633A004353.") == []  # VIN check digit fails, no context


def test_only_requested_types_in_text_order_without_overlaps(check):
    text = "Jane Roe (jane@example.com, 555-867-5309) lives at 12 Oak Street, Dover, DE 19901."
    assert spans(check, text, {"EMAIL"}) == [("EMAIL", "jane@example.com")]
    found = check.find(text, check.entities)
    assert [s.type for s in found] == ["NAME", "EMAIL", "PHONE", "ADDRESS"]
    assert all(a.end <= b.start for a, b in zip(found, found[1:], strict=False))
    assert all(0 <= s.score <= 1 for s in found)


def test_unknown_types_and_empty_text(check):
    assert check.find("My SSN is 536-22-8726.", {"NOT_A_TYPE"}) == []
    assert check.find("   ", check.entities) == []


def test_concurrent_calls_agree(check):
    text = "Call Maria Garcia at +1 415 555 0199 or maria@example.com about card 5555 5555 5555 4444."
    expected = check.find(text, check.entities)
    results: list[list[EntitySpan]] = []
    threads = [threading.Thread(target=lambda: results.append(check.find(text, check.entities))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [expected] * 4
