"""WeCom (企业微信) callback message crypto: signature check, AES decryption and encryption
of what WeCom posts to an application's callback URL and what the URL answers.

The scheme ("加解密方案说明", https://developer.work.weixin.qq.com/document/path/91144;
the same page for internal apps is .../document/path/90968):

* msg_signature = sha1 of the sorted concatenation of [token, timestamp, nonce, encrypt];
* AESKey = Base64_Decode(EncodingAESKey + "="): an EncodingAESKey is 43 characters of
  a-z A-Z 0-9, the key 32 bytes (AES-256), CBC mode with IV = AESKey[:16];
* plaintext = 16 random bytes + the message's length (4 bytes, big-endian) + the message
  + the receive id (the corpid for an application), PKCS#7-padded to a multiple of 32 bytes;
  encrypt = base64 of the ciphertext.

URL verification (GET ?msg_signature&timestamp&nonce&echostr): check the signature over
echostr, decrypt it and answer the plain text (``check_signature``). Callbacks (POST): the
body is ``<xml><ToUserName/><AgentID/><Encrypt>...</Encrypt></xml>``; the signature covers
Encrypt, which decrypts to the event's own XML (``decrypt_message``). A passive reply is
encrypted into ``<xml><Encrypt/><MsgSignature/><TimeStamp/><Nonce/></xml>``
(``encrypt_message``).

Ported from wechatpy (https://github.com/wechatpy/wechatpy, MIT licence, Copyright (c)
2014-2020 messense): ``wechatpy.crypto._get_signature`` and ``wechatpy.utils.WeChatSigner``
(the signature), ``BaseWeChatCrypto._check_signature / _encrypt_message / _decrypt_message``
(wechatpy/crypto/__init__.py), ``BasePrpCrypto._encrypt / _decrypt`` and ``WeChatCipher``
(wechatpy/crypto/base.py), ``PKCS7Encoder`` (wechatpy/crypto/pkcs7.py) and
``wechatpy.work.crypto.WeChatCrypto``, onto ``cryptography``. Differences: the signature is
compared in constant time; padding, the length field, UTF-8 and base64 are checked (wechatpy
slices whatever the cipher gives); XML is parsed without DTDs or entities. The tests use
wechatpy's own vectors (tests/test_crypto.py) and Tencent's sample ones, so both ways are
byte-compatible with them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import string
import struct
import time
import xml.etree.ElementTree as ET
from typing import Any

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

try:  # defusedxml where installed; the DOCTYPE/ENTITY guard below holds either way
    from defusedxml.ElementTree import fromstring as _fromstring  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - depends on the environment
    _fromstring = ET.fromstring

BLOCK = 32  # PKCS#7 pads to a multiple of 32 bytes here (WeCom's choice), not AES's 16
AES_KEY_CHARS = 43
_AES_KEY = re.compile(r"[A-Za-z0-9]{43}")
# A callback body or a decrypted event is a few KB; refuse anything much bigger unread.
MAX_XML_CHARS = 512 * 1024
_DTD = re.compile(r"<!\s*(DOCTYPE|ENTITY|ELEMENT|ATTLIST|NOTATION)", re.IGNORECASE)
_NONCE = re.compile(r"[A-Za-z0-9_\-]{1,64}")
_TIMESTAMP = re.compile(r"[0-9]{1,20}")
_RANDOM_CHARS = string.ascii_letters + string.digits

REPLY_XML = """<xml>
<Encrypt><![CDATA[{encrypt}]]></Encrypt>
<MsgSignature><![CDATA[{signature}]]></MsgSignature>
<TimeStamp>{timestamp}</TimeStamp>
<Nonce><![CDATA[{nonce}]]></Nonce>
</xml>"""


class CryptoError(Exception):
    """A callback that cannot be read: bad base64, padding, length, XML or key."""


class InvalidSignature(CryptoError):
    """msg_signature does not match: not from WeCom (or not for this token)."""


class InvalidCorpId(CryptoError):
    """The message decrypted, but for another corp (receive id)."""


def aes_key_problem(value: object) -> str | None:
    """Why ``value`` is not an EncodingAESKey (43 letters and digits), or None. Never
    quotes the value: it is a secret."""
    if not isinstance(value, str):
        return f"EncodingAESKey must be text, not {type(value).__name__}"
    if len(value) != AES_KEY_CHARS:
        return (f"EncodingAESKey must be exactly {AES_KEY_CHARS} characters (as the callback settings show it); "
                f"this one has {len(value)}")
    if not _AES_KEY.fullmatch(value):
        return "EncodingAESKey must be only letters a-z, A-Z and digits 0-9"
    return None


def signature(token: str, timestamp: str, nonce: str, encrypt: str) -> str:
    """msg_signature: sha1 hex of the four values sorted (as bytes) and joined."""
    parts = sorted(str(v).encode("utf-8") for v in (token, timestamp, nonce, encrypt))
    return hashlib.sha1(b"".join(parts)).hexdigest()


def _refuse_dtd(text: str) -> None:
    if len(text) > MAX_XML_CHARS:
        raise CryptoError(f"XML body of {len(text)} characters refused (at most {MAX_XML_CHARS})")
    if _DTD.search(text):
        raise CryptoError("XML with a DOCTYPE or ENTITY declaration is refused")


def parse_xml(text: str | bytes) -> dict[str, str]:
    """The top-level child elements of an XML document as {tag: text}, whitespace around
    the text stripped (as wechatpy's xmltodict does); an element with children gives its
    text content. No DTDs, no entities; a tag twice is refused (which one would count?)."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise CryptoError("XML body is not UTF-8") from None
    if not isinstance(text, str):
        raise CryptoError(f"XML body must be text, not {type(text).__name__}")
    _refuse_dtd(text)
    try:
        root = _fromstring(text)
    except ET.ParseError as exc:
        raise CryptoError(f"XML body is not well-formed: {str(exc)[:120]}") from None
    except Exception as exc:  # defusedxml's DTDForbidden, EntitiesForbidden...
        raise CryptoError(f"XML body refused: {exc.__class__.__name__}") from None
    out: dict[str, str] = {}
    for child in root:
        tag = child.tag if isinstance(child.tag, str) else ""
        if tag in out:
            raise CryptoError(f"XML body has <{tag[:40]}> twice")
        out[tag] = ("".join(child.itertext()) if len(child) else (child.text or "")).strip()
    return out


class WeComCrypto:
    """One application's callback crypto: ``token`` and ``encoding_aes_key`` from its
    callback settings (接收消息服务器配置), ``corp_id`` the corp's id (the receive id)."""

    def __init__(self, token: str, encoding_aes_key: str, corp_id: str):
        problem = aes_key_problem(encoding_aes_key)
        if problem:
            raise CryptoError(problem)
        if not isinstance(token, str) or not token:
            raise CryptoError("the callback Token must not be empty")
        if not isinstance(corp_id, str) or not corp_id:
            raise CryptoError("the corp id must not be empty")
        key = base64.b64decode(encoding_aes_key + "=")
        if len(key) != 32:  # 43 base64 characters always give 32 bytes; kept from wechatpy's assert
            raise CryptoError("EncodingAESKey does not decode to a 32-byte AES key")
        self.key = key
        self.token = token
        self.corp_id = corp_id

    # --- the cipher (wechatpy's WeChatCipher, BasePrpCrypto, PKCS7Encoder) ---------------

    def _cipher(self) -> Cipher:
        return Cipher(algorithms.AES(self.key), modes.CBC(self.key[:16]))

    @staticmethod
    def _random_prefix() -> bytes:
        # wechatpy: random_string(16) of letters and digits; any 16 bytes would do.
        return "".join(secrets.choice(_RANDOM_CHARS) for _ in range(16)).encode("ascii")

    def encrypt(self, text: str, prefix: bytes | None = None) -> str:
        """base64(AES-CBC(prefix + len + text + corp_id, PKCS#7 to 32)). ``prefix``: the 16
        random bytes (tests pass wechatpy's fixed ones)."""
        prefix = self._random_prefix() if prefix is None else prefix
        if len(prefix) != 16:
            raise CryptoError("the random prefix must be 16 bytes")
        data = text.encode("utf-8")
        plain = prefix + struct.pack(">I", len(data)) + data + self.corp_id.encode("utf-8")
        pad = BLOCK - len(plain) % BLOCK  # 1..32: a whole block of padding when already aligned
        plain += bytes([pad]) * pad
        enc = self._cipher().encryptor()
        return base64.b64encode(enc.update(plain) + enc.finalize()).decode("ascii")

    def decrypt(self, encrypted: str) -> str:
        """The message inside ``encrypted``; raises CryptoError, or InvalidCorpId when it
        was made for another corp. Check the signature first (``decrypt_message`` does)."""
        try:
            raw = base64.b64decode(encrypted, validate=True)
        except (binascii.Error, ValueError):
            raise CryptoError("Encrypt is not valid base64") from None
        if not raw or len(raw) % 16:
            raise CryptoError(f"ciphertext of {len(raw)} bytes is not a whole number of AES blocks")
        dec = self._cipher().decryptor()
        plain = dec.update(raw) + dec.finalize()
        pad = plain[-1]
        if not 1 <= pad <= BLOCK or plain[-pad:] != bytes([pad]) * pad:
            raise CryptoError("bad padding after decryption (wrong EncodingAESKey?)")
        content = plain[16:-pad]
        if len(content) < 4:
            raise CryptoError("decrypted message too short")
        (length,) = struct.unpack(">I", content[:4])
        if 4 + length > len(content):
            raise CryptoError("decrypted message length field runs past the end")
        try:
            msg = content[4:4 + length].decode("utf-8")
            from_id = content[4 + length:].decode("utf-8")
        except UnicodeDecodeError:
            raise CryptoError("decrypted message is not UTF-8") from None
        if not hmac.compare_digest(from_id.encode("utf-8"), self.corp_id.encode("utf-8")):
            raise InvalidCorpId("the message was encrypted for another corp id (receive id)")
        return msg

    # --- the callback API (wechatpy.work.crypto.WeChatCrypto) ----------------------------

    def signature(self, timestamp: str, nonce: str, encrypt: str) -> str:
        return signature(self.token, timestamp, nonce, encrypt)

    def _verify(self, given: object, timestamp: str, nonce: str, encrypt: str) -> None:
        expected = self.signature(timestamp, nonce, encrypt).encode("ascii")
        if not isinstance(given, str) or not hmac.compare_digest(given.encode("utf-8"), expected):
            raise InvalidSignature("msg_signature does not match (not from WeCom, or another Token)")

    def check_signature(self, signature: str, timestamp: str, nonce: str, echostr: str) -> str:
        """URL verification: the decrypted echostr to answer, as plain text."""
        self._verify(signature, timestamp, nonce, echostr)
        return self.decrypt(echostr)

    def decrypt_message(self, msg: str | bytes | dict[str, Any], signature: str, timestamp: str,
                        nonce: str) -> str:
        """A callback body (the XML, or its parsed fields) -> the decrypted inner XML."""
        fields = msg if isinstance(msg, dict) else parse_xml(msg)
        encrypt = fields.get("Encrypt")
        if not isinstance(encrypt, str) or not encrypt:
            raise CryptoError("callback body has no Encrypt element")
        self._verify(signature, timestamp, nonce, encrypt)
        return self.decrypt(encrypt)

    def encrypt_message(self, reply_xml: str, nonce: str, timestamp: str | int | None = None,
                        prefix: bytes | None = None) -> str:
        """A passive reply: ``reply_xml`` encrypted and signed, in WeCom's reply XML."""
        timestamp = str(timestamp) if timestamp is not None else str(int(time.time()))
        if not _TIMESTAMP.fullmatch(timestamp):
            raise CryptoError("timestamp must be digits")
        if not isinstance(nonce, str) or not _NONCE.fullmatch(nonce):
            raise CryptoError("nonce must be 1 to 64 letters, digits, _ or -")
        encrypt = self.encrypt(reply_xml, prefix)
        return REPLY_XML.format(encrypt=encrypt, signature=self.signature(timestamp, nonce, encrypt),
                                timestamp=timestamp, nonce=nonce)
