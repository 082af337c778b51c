"""WeCom callback crypto (connectors/wecom_crypto.py): byte-compatible with wechatpy's
test vectors (wechatpy tests/test_crypto.py, MIT) and with Tencent's WXBizMsgCrypt sample
ones; a round trip; and every way a forged or broken callback is refused."""

import base64
import struct

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from connectors.wecom_crypto import (
    CryptoError,
    InvalidCorpId,
    InvalidSignature,
    WeComCrypto,
    aes_key_problem,
    parse_xml,
    signature,
)

# --- wechatpy's vectors (tests/test_crypto.py, CryptoTestCase) ----------------------------
WP_TOKEN = "123456"
WP_KEY = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR"
WP_CORP = "wx49f0ab532d5d035a"
WP_ECHO = "4ByGGj+sVCYcvGeQYhaKIk1o0pQRNbRjxybjTGblXrBaXlTXeOo1+bXFXDQQb1o6co6Yh9Bv41n7hOchLF6p+Q=="
WP_REPLY = """<xml>
<MsgType><![CDATA[text]]></MsgType>
<Content><![CDATA[test]]></Content>
<FromUserName><![CDATA[wx49f0ab532d5d035a]]></FromUserName>
<ToUserName><![CDATA[messense]]></ToUserName>
<AgentID>1</AgentID>
<CreateTime>1411525903</CreateTime>
</xml>"""
WP_ENCRYPTED_REPLY = """<xml>
<Encrypt><![CDATA[9s4gMv99m88kKTh/H8IdkOiMg6bisoy3ypwy9H4hvSPe9nsGaqyw5hhSjdYbcrKk+j3nba4HMOTzHrluLBYqxgNcBqGsL8GqxlhZgURnAtObvesEl5nZ+uBE8bviY0LWke8Zy9V/QYKxNV2FqllNXcfmstttyIkMKCCmVbCFM2JTF5wY0nFhHZSjPUL2Q1qvSUCUld+/WIXrx0oyKQmpB6o8NRrrNrsDf03oxI1p9FxUgMnwKKZeOA/uu+2IEvEBtb7muXsVbwbgX05UPPJvFurDXafG0RQyPR+mf1nDnAtQmmNOuiR5MIkdQ39xn1vWwi1O5oazPoQJz0nTYjxxEE8kv3kFxtAGVRe3ypD3WeK2XeFYFMNMpatF9XiKzHo3]]></Encrypt>
<MsgSignature><![CDATA[407518b7649e86ef23978113f92d27afa9296533]]></MsgSignature>
<TimeStamp>1411525903</TimeStamp>
<Nonce><![CDATA[461056294]]></Nonce>
</xml>"""  # noqa: E501
WP_BODY = """<xml><ToUserName><![CDATA[wx49f0ab532d5d035a]]></ToUserName>
<Encrypt><![CDATA[RgqEoJj5A4EMYlLvWO1F86ioRjZfaex/gePD0gOXTxpsq5Yj4GNglrBb8I2BAJVODGajiFnXBu7mCPatfjsu6IHCrsTyeDXzF6Bv283dGymzxh6ydJRvZsryDyZbLTE7rhnus50qGPMfp2wASFlzEgMW9z1ef/RD8XzaFYgm7iTdaXpXaG4+BiYyolBug/gYNx410cvkKR2/nPwBiT+P4hIiOAQqGp/TywZBtDh1yCF2KOd0gpiMZ5jSw3e29mTvmUHzkVQiMS6td7vXUaWOMZnYZlF3So2SjHnwh4jYFxdgpkHHqIrH/54SNdshoQgWYEvccTKe7FS709/5t6NMxuGhcUGAPOQipvWTT4dShyqio7mlsl5noTrb++x6En749zCpQVhDpbV6GDnTbcX2e8K9QaNWHp91eBdCRxthuL0=]]></Encrypt>
<AgentID><![CDATA[1]]></AgentID>
</xml>"""  # noqa: E501

# --- Tencent's WXBizMsgCrypt sample (Sample.cpp / Sample.php of the official library) ---
TC_TOKEN = "QDG6eK"
TC_KEY = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"
TC_CORP = "wx5823bf96d3bd56c7"
TC_ECHO = "P9nAzCzyDtyTWESHep1vC5X9xho/qYX3Zpb4yKa9SKld1DsH3Iyt3tP3zNdtp+4RPcs8TgAE7OaBO+FZXvnaqQ=="
TC_ENCRYPT = ("RypEvHKD8QQKFhvQ6QleEB4J58tiPdvo+rtK1I9qca6aM/wvqnLSV5zEPeusUiX5L5X/0lWfrf0QADHHhGd3QczcdCUpj911L3vg3W/"
              "sYYvuJTs3TUUkSUXxaccAS0qhxchrRYt66wiSpGLYL42aM6A8dTT+6k4aSknmPj48kzJs8qLjvd4Xgpue06DOdnLxAUHzM6+kDZ+"
              "HMZfJYuR+LtwGc2hgf5gsijff0ekUNXZiqATP7PF5mZxZ3Izoun1s4zG4LUMnvw2r+KqCKIw+3IQH03v+BCA9nMELNqbSf6tiWSrXJB"
              "3LAVGUcallcrw8V2t9EL4EhzJWrQUax5wLVMNS0+rUPA3k22Ncx4XXZS9o0MBH27Bo6BpNelZpS+/uh9KsNlY6bHCmJU9p8g7m3fVKn"
              "28H3KDYA5Pl/T8Z1ptDAVe0lXdQ2YoyyH2uyPIGHBZZIs2pDBS8R07+qN+E7Q==")
TC_BODY = (f"<xml><ToUserName><![CDATA[{TC_CORP}]]></ToUserName><Encrypt><![CDATA[{TC_ENCRYPT}]]></Encrypt>"
           "<AgentID><![CDATA[218]]></AgentID></xml>")


def wp() -> WeComCrypto:
    return WeComCrypto(WP_TOKEN, WP_KEY, WP_CORP)


def tc() -> WeComCrypto:
    return WeComCrypto(TC_TOKEN, TC_KEY, TC_CORP)


def test_wechatpy_url_verification_vector():
    echo = wp().check_signature("dd6b9c95b495b3f7e2901bfbc76c664930ffdb96", "1411443780", "437374425", WP_ECHO)
    assert echo == "5927782489442352469"  # what the echostr carries (wechatpy's test only checks it decrypts)


def test_wechatpy_url_verification_with_another_nonce_fails():
    with pytest.raises(InvalidSignature, match="msg_signature does not match"):
        wp().check_signature("dd6b9c95b495b3f7e2901bfbc76c664930ffdb96", "1411443780", "437374424", WP_ECHO)


def test_wechatpy_encrypt_vector_is_byte_identical():
    # wechatpy's PrpCryptoMock fixes the 16 random bytes to "1234567890123456".
    out = wp().encrypt_message(WP_REPLY, "461056294", "1411525903", prefix=b"1234567890123456")
    assert out == WP_ENCRYPTED_REPLY


@pytest.mark.parametrize("body", [WP_BODY, WP_BODY.encode("utf-8")])
def test_wechatpy_decrypt_vector(body):
    msg = wp().decrypt_message(body, "74d92dfeb87ba7c714f89d98870ae5eb62dff26d", "1411525903", "461056294")
    fields = parse_xml(msg)
    assert fields["Content"] == "test" and fields["FromUserName"] == "messense"
    assert fields == {"ToUserName": WP_CORP, "FromUserName": "messense", "CreateTime": "1411525903", "MsgType": "text",
                      "Content": "test", "MsgId": "4363689963896700987", "AgentID": "1"}


def test_tencent_sample_vectors():
    assert tc().check_signature("5c45ff5e21c57e6ad56bac8758b79b1d9ac89fd3", "1409659589", "263014780",
                                TC_ECHO) == "1616140317555161061"
    assert signature(TC_TOKEN, "1409659813", "1372623149", TC_ENCRYPT) == "477715d11cdb4164915debcba66cb864d751f3e6"
    msg = tc().decrypt_message(TC_BODY, "477715d11cdb4164915debcba66cb864d751f3e6", "1409659813", "1372623149")
    assert parse_xml(msg) == {"ToUserName": TC_CORP, "FromUserName": "mycreate", "CreateTime": "1409659813",
                              "MsgType": "text", "Content": "hello", "MsgId": "4561255354251345929", "AgentID": "218"}
    # The parsed fields work as well as the XML (as wechatpy accepts a dict).
    assert tc().decrypt_message({"Encrypt": TC_ENCRYPT}, "477715d11cdb4164915debcba66cb864d751f3e6",
                                "1409659813", "1372623149") == msg


def test_round_trip_with_chinese_and_every_length_of_padding():
    c = tc()
    for n in range(0, 70):  # crosses several 32-byte boundaries, including exact ones
        text = "<xml><Content><![CDATA[" + "客" * (n % 7) + "x" * n + "]]></Content></xml>"
        reply = c.encrypt_message(text, "nonce-1", 1700000000)
        fields = parse_xml(reply)
        assert fields["TimeStamp"] == "1700000000" and fields["Nonce"] == "nonce-1"
        assert fields["MsgSignature"] == c.signature("1700000000", "nonce-1", fields["Encrypt"])
        assert c.decrypt_message(reply, fields["MsgSignature"], "1700000000", "nonce-1") == text


def test_random_prefix_differs_each_time():
    c = tc()
    assert c.encrypt("same") != c.encrypt("same")
    assert c.decrypt(c.encrypt("same")) == "same"


def test_wrong_signature_is_refused_before_decrypting():
    c = tc()
    with pytest.raises(InvalidSignature):
        c.decrypt_message(TC_BODY, "0" * 40, "1409659813", "1372623149")
    with pytest.raises(InvalidSignature):  # the timestamp is covered by the signature
        c.decrypt_message(TC_BODY, "477715d11cdb4164915debcba66cb864d751f3e6", "1409659814", "1372623149")
    with pytest.raises(InvalidSignature):  # another token
        WeComCrypto("other", TC_KEY, TC_CORP).decrypt_message(
            TC_BODY, "477715d11cdb4164915debcba66cb864d751f3e6", "1409659813", "1372623149")
    with pytest.raises(InvalidSignature):
        c.decrypt_message(TC_BODY, "４７７715d11cdb4164915debcba66cb864d751f3e6", "1409659813", "1372623149")
    with pytest.raises(InvalidSignature):
        c.check_signature(None, "1409659589", "263014780", TC_ECHO)


def test_wrong_corp_id():
    with pytest.raises(InvalidCorpId, match="another corp id"):
        WeComCrypto(TC_TOKEN, TC_KEY, "ww-someone-else").decrypt_message(
            TC_BODY, "477715d11cdb4164915debcba66cb864d751f3e6", "1409659813", "1372623149")
    # A message of ours, checked by a crypto with the same key but another corp id.
    other = WeComCrypto(TC_TOKEN, TC_KEY, "wwOther")
    with pytest.raises(InvalidCorpId):
        tc().decrypt(other.encrypt("<xml/>"))
    assert issubclass(InvalidCorpId, CryptoError) and issubclass(InvalidSignature, CryptoError)


def signed_body(c: WeComCrypto, encrypt: str) -> tuple[str, str]:
    return f"<xml><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>", c.signature("1", "n", encrypt)


def test_tampered_ciphertext_is_refused():
    c = tc()
    raw = bytearray(base64.b64decode(c.encrypt("<xml><Content>hi</Content></xml>")))
    raw[-1] ^= 0x01  # the last block's padding turns to garbage
    body, sig = signed_body(c, base64.b64encode(bytes(raw)).decode())
    with pytest.raises(CryptoError):
        c.decrypt_message(body, sig, "1", "n")
    raw = bytearray(base64.b64decode(c.encrypt("<xml><Content>hi</Content></xml>")))
    raw[0] ^= 0x80  # the first block (random prefix) garbles, the length field after it flips
    body, sig = signed_body(c, base64.b64encode(bytes(raw)).decode())
    with pytest.raises(CryptoError):
        c.decrypt_message(body, sig, "1", "n")


def raw_encrypt(c: WeComCrypto, plain: bytes) -> str:
    enc = Cipher(algorithms.AES(c.key), modes.CBC(c.key[:16])).encryptor()
    return base64.b64encode(enc.update(plain) + enc.finalize()).decode()


@pytest.mark.parametrize("tail", [b"\x00" * 32, b"\x21" * 32, b"\x05" * 31 + b"\x04", b"\x03" * 30 + b"\x02\x03"])
def test_bad_padding_is_refused(tail):
    c = tc()
    msg = b"0123456789abcdef" + struct.pack(">I", 3) + b"abc" + TC_CORP.encode()
    plain = msg + b"x" * (-len(msg) % 32) + tail  # whole blocks, but padding that is not PKCS#7
    with pytest.raises(CryptoError, match="bad padding"):
        c.decrypt(raw_encrypt(c, plain))


def test_length_field_past_the_end_and_short_messages():
    c = tc()
    plain = b"0123456789abcdef" + struct.pack(">I", 10_000) + b"abc"
    plain += bytes([32 - len(plain) % 32]) * (32 - len(plain) % 32)
    with pytest.raises(CryptoError, match="length field"):
        c.decrypt(raw_encrypt(c, plain))
    with pytest.raises(CryptoError, match="too short"):
        c.decrypt(raw_encrypt(c, b"0123456789abcdef" + bytes([16]) * 16))


@pytest.mark.parametrize("encrypt,match", [("not base64!!", "not valid base64"), ("", "not valid base64|no Encrypt"),
                                           (base64.b64encode(b"x" * 17).decode(), "whole number of AES blocks")])
def test_garbage_ciphertext(encrypt, match):
    c = tc()
    if encrypt:
        body, sig = signed_body(c, encrypt)
        with pytest.raises(CryptoError, match=match):
            c.decrypt_message(body, sig, "1", "n")
    else:
        with pytest.raises(CryptoError, match="no Encrypt"):
            c.decrypt_message("<xml><ToUserName>x</ToUserName></xml>", "s", "1", "n")


HOSTILE_XML = [
    """<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]>
<xml><Encrypt>&b;</Encrypt></xml>""",
    """<!DOCTYPE xml SYSTEM "file:///etc/passwd"><xml><Encrypt>x</Encrypt></xml>""",
    """<?xml version="1.0"?>\n<!doctype xml [<!entity x SYSTEM "http://169.254.169.254/">]><xml><Encrypt>&x;</Encrypt></xml>""",
    """<xml><Encrypt>x</Encrypt></xml><!ENTITY late "x">""",
]


@pytest.mark.parametrize("body", HOSTILE_XML)
def test_a_doctype_or_entity_body_is_refused(body):
    with pytest.raises(CryptoError, match="DOCTYPE or ENTITY"):
        parse_xml(body)
    with pytest.raises(CryptoError, match="DOCTYPE or ENTITY"):
        tc().decrypt_message(body, "s", "1", "n")
    with pytest.raises(CryptoError):
        parse_xml(body.encode("utf-8"))


def test_an_entity_inside_the_encrypted_event_is_refused_too():
    c = tc()
    inner = '<!DOCTYPE xml [<!ENTITY a "boom">]><xml><EventKey>&a;</EventKey></xml>'
    body, sig = signed_body(c, c.encrypt(inner))
    decrypted = c.decrypt_message(body, sig, "1", "n")  # decrypting is fine; parsing the event is not
    with pytest.raises(CryptoError, match="DOCTYPE or ENTITY"):
        parse_xml(decrypted)


@pytest.mark.parametrize("body,match", [
    ("<xml><Encrypt>a</Encrypt><Encrypt>b</Encrypt></xml>", "twice"),
    ("<xml><Encrypt>a</Encrypt>", "not well-formed"),
    (b"<xml>\xff</xml>", "not UTF-8"),
    ("<xml>" + "x" * (600 * 1024) + "</xml>", "refused"),
])
def test_malformed_xml(body, match):
    with pytest.raises(CryptoError, match=match):
        parse_xml(body)


def test_parse_xml_top_level_fields():
    fields = parse_xml("""<xml>
      <ToUserName><![CDATA[ww1]]></ToUserName>
      <AgentID>1000002</AgentID>
      <Empty/>
      <SelectedItems><SelectedItem><QuestionKey>q</QuestionKey></SelectedItem></SelectedItems>
      <Text><![CDATA[ a <b> & ]]]]><![CDATA[> ]]></Text>
    </xml>""")
    assert fields == {"ToUserName": "ww1", "AgentID": "1000002", "Empty": "", "SelectedItems": "q",
                      "Text": "a <b> & ]]>"}


@pytest.mark.parametrize("key,match", [
    (TC_KEY[:-1], "exactly 43 characters.*has 42"),
    (TC_KEY + "A", "has 44"),
    (TC_KEY[:-1] + "=", "only letters"),
    (TC_KEY[:-1] + "+", "only letters"),
    ("", "has 0"),
])
def test_encoding_aes_key_is_checked_at_construction(key, match):
    with pytest.raises(CryptoError, match=match) as err:
        WeComCrypto(TC_TOKEN, key, TC_CORP)
    assert "\n" not in str(err.value) and (not key or key not in str(err.value))  # one line, never the key
    assert aes_key_problem(key) is not None
    assert aes_key_problem(TC_KEY) is None


def test_token_and_corp_id_are_required():
    with pytest.raises(CryptoError, match="Token"):
        WeComCrypto("", TC_KEY, TC_CORP)
    with pytest.raises(CryptoError, match="corp id"):
        WeComCrypto(TC_TOKEN, TC_KEY, "")


@pytest.mark.parametrize("nonce,timestamp", [("a]]><x>", "1"), ("", "1"), ("n", "12ab"), ("n", "1\n2")])
def test_reply_nonce_and_timestamp_cannot_break_the_xml(nonce, timestamp):
    with pytest.raises(CryptoError):
        tc().encrypt_message("<xml/>", nonce, timestamp)


def test_error_messages_are_one_line():
    c = tc()
    for call in (lambda: c.decrypt("%%%"), lambda: c.decrypt_message("<xml>", "s", "1", "n"),
                 lambda: c.check_signature("x", "1", "n", TC_ECHO)):
        with pytest.raises(CryptoError) as err:
            call()
        assert "\n" not in str(err.value)
