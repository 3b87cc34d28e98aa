"""CMS EnvelopedData, the pkcsPKIEnvelope of SCEP: opened with the CA key, sealed to a client.

Requests arrive RSA key-transported (PKCS#1 v1.5 or OAEP) with AES-CBC, 3DES-CBC or, from old
clients such as micromdm's scepclient 2.1, single DES-CBC. Replies are sealed with the
request's cipher family (AES when the client used AES, else 3DES), never single DES, key
transported with PKCS#1 v1.5, which every SCEP client decrypts.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from asn1crypto import algos, parser
from asn1crypto import cms as acms
from cryptography import x509
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives import hashes, padding
from cryptography.hazmat.primitives.asymmetric import padding as rsa_padding
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers import BlockCipherAlgorithm, Cipher, algorithms, modes
from cryptography.hazmat.primitives.serialization import Encoding

from mdmappliance.pki.cms import PARSE_ERRORS
from mdmappliance.scep.attributes import FailInfo, SCEPFailure

#: Content ciphers by asn1crypto's name: key length, block size, and the family.
CIPHERS: dict[str, tuple[int, str]] = {
    "aes128_cbc": (16, "aes"),
    "aes192_cbc": (24, "aes"),
    "aes256_cbc": (32, "aes"),
    "tripledes_3key": (24, "des"),
    "des": (8, "des"),
}
OAEP_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1,
    "sha224": hashes.SHA224,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}


@dataclass(frozen=True)
class Opened:
    content: bytes
    #: The content cipher the client chose (asn1crypto's name), to answer in its family.
    cipher: str


def _cipher(name: str, key: bytes) -> BlockCipherAlgorithm:
    if CIPHERS[name][1] == "aes":
        return algorithms.AES(key)
    # Single DES is 3DES with one key three times: DES-EDE with K1 = K2 = K3.
    return TripleDES(key * 3 if len(key) == 8 else key)


def _recipient(
    infos: acms.RecipientInfos, ca_certificates: tuple[x509.Certificate, ...]
) -> acms.KeyTransRecipientInfo:
    """The key-transport RecipientInfo addressed to one of the CA's certificates."""
    parsed = [acms.Certificate.load(c.public_bytes(Encoding.DER)) for c in ca_certificates]
    for info in infos:
        if info.name != "ktri":
            continue
        ktri = info.chosen
        rid = ktri["rid"]
        for ca in parsed:
            if rid.name == "issuer_and_serial_number":
                wanted = rid.chosen
                if (
                    wanted["issuer"] == ca.issuer
                    and wanted["serial_number"].native == ca.serial_number
                ):
                    return ktri
            elif rid.name == "subject_key_identifier" and rid.chosen.native == ca.key_identifier:
                return ktri
    raise SCEPFailure(FailInfo.BAD_MESSAGE_CHECK, "the request is not encrypted to this CA")


def _unwrap_key(ktri: acms.KeyTransRecipientInfo, ca_key: rsa.RSAPrivateKey) -> bytes:
    try:
        algorithm = ktri["key_encryption_algorithm"]
        name = algorithm["algorithm"].native
        encrypted = ktri["encrypted_key"].native
        oaep: rsa_padding.OAEP | None = None
        if name == "rsaes_oaep":
            params = algorithm["parameters"]
            digest = OAEP_HASHES[params["hash_algorithm"]["algorithm"].native]
            mgf = OAEP_HASHES[params["mask_gen_algorithm"]["parameters"]["algorithm"].native]
            label = params["p_source_algorithm"]["parameters"].native or None
            oaep = rsa_padding.OAEP(rsa_padding.MGF1(mgf()), digest(), label)
    except (KeyError, TypeError, ValueError) as e:
        raise SCEPFailure(FailInfo.BAD_ALG, f"unreadable key transport ({e})") from None
    if name not in ("rsaes_pkcs1v15", "rsaes_oaep"):
        raise SCEPFailure(FailInfo.BAD_ALG, f"unsupported key transport {name}")
    if not isinstance(encrypted, bytes):
        raise SCEPFailure(FailInfo.BAD_REQUEST, "the RecipientInfo has no encrypted key")
    try:
        return ca_key.decrypt(encrypted, oaep or rsa_padding.PKCS1v15())
    except ValueError:
        raise SCEPFailure(FailInfo.BAD_MESSAGE_CHECK, "the content key does not decrypt") from None


def open_envelope(
    der: bytes, ca_certificates: tuple[x509.Certificate, ...], ca_key: rsa.RSAPrivateKey
) -> Opened:
    """Decrypt an EnvelopedData addressed to the CA. SCEPFailure if it is not one, is for
    another CA, or does not decrypt."""
    try:
        info = acms.ContentInfo.load(der)
        if info["content_type"].native != "enveloped_data":
            raise SCEPFailure(
                FailInfo.BAD_REQUEST, f"pkcsPKIEnvelope is {info['content_type'].native}"
            )
        enveloped = info["content"]
        ktri = _recipient(enveloped["recipient_infos"], ca_certificates)
        encrypted_info = enveloped["encrypted_content_info"]
        algorithm = encrypted_info["content_encryption_algorithm"]
        name = algorithm["algorithm"].native
        ciphertext = _encrypted_content(encrypted_info)
        iv = algorithm["parameters"].native if name in CIPHERS else None
    except SCEPFailure:
        raise
    except PARSE_ERRORS as e:
        raise SCEPFailure(FailInfo.BAD_REQUEST, f"malformed EnvelopedData ({e})") from None
    if name not in CIPHERS:
        raise SCEPFailure(FailInfo.BAD_ALG, f"unsupported content cipher {name}")
    key_length, _ = CIPHERS[name]
    if not isinstance(ciphertext, bytes) or not isinstance(iv, bytes) or not ciphertext:
        raise SCEPFailure(FailInfo.BAD_REQUEST, "the EnvelopedData has no encrypted content")
    key = _unwrap_key(ktri, ca_key)
    if len(key) != key_length:
        raise SCEPFailure(FailInfo.BAD_MESSAGE_CHECK, "the content key does not decrypt")
    cipher = _cipher(name, key)
    block_bytes = cipher.block_size // 8
    if len(iv) != block_bytes or len(ciphertext) % block_bytes:
        raise SCEPFailure(FailInfo.BAD_REQUEST, "the encrypted content is not whole blocks")
    decryptor = Cipher(cipher, modes.CBC(iv)).decryptor()
    padded = decryptor.update(ciphertext) + decryptor.finalize()
    unpadder = padding.PKCS7(cipher.block_size).unpadder()
    try:
        content = unpadder.update(padded) + unpadder.finalize()
    except ValueError:
        raise SCEPFailure(FailInfo.BAD_MESSAGE_CHECK, "the content does not decrypt") from None
    return Opened(content, name)


def _octets(data: bytes, depth: int = 0) -> bytes:
    """The bytes of an OCTET STRING's contents in constructed form: the concatenated
    contents of the OCTET STRINGs inside (nested, definite or indefinite length)."""
    if depth > 8:
        raise ValueError("OCTET STRING chunks nested too deep")
    chunks = []
    while data:
        cls, method, tag, header, contents, trailer = parser.parse(data)
        data = data[len(header) + len(contents) + len(trailer) :]
        if (cls, tag) == (0, 0):  # end-of-contents of an indefinite length
            break
        if (cls, tag) != (0, 4):
            raise ValueError("a constructed OCTET STRING holds something else")
        chunks.append(_octets(contents, depth + 1) if method else contents)
    return b"".join(chunks)


def _encrypted_content(encrypted_info: acms.EncryptedContentInfo) -> bytes:
    """encryptedContent ([0] IMPLICIT OCTET STRING), primitive or constructed. asn1crypto
    refuses the constructed form that Go's pkcs7 (scepclient) writes, so that one is read
    from the raw encoding here."""
    try:
        value = encrypted_info["encrypted_content"].native
        return value if isinstance(value, bytes) else b""
    except ValueError:
        pass
    rest = encrypted_info.contents
    for _ in range(3):
        cls, method, tag, header, contents, trailer = parser.parse(rest)
        if (cls, tag) == (2, 0):
            return _octets(contents) if method else contents
        rest = rest[len(header) + len(contents) + len(trailer) :]
    raise ValueError("no encryptedContent")


def reply_cipher(request_cipher: str) -> str:
    """The cipher of a reply: the client's AES, or 3DES for a DES-family client."""
    return request_cipher if CIPHERS[request_cipher][1] == "aes" else "tripledes_3key"


def seal_envelope(content: bytes, recipient: x509.Certificate, cipher_name: str) -> bytes:
    """An EnvelopedData of ``content`` that only ``recipient``'s (RSA) key opens."""
    public = recipient.public_key()
    if not isinstance(public, rsa.RSAPublicKey):
        raise SCEPFailure(FailInfo.BAD_ALG, "replies can be encrypted to RSA keys only")
    key_length, _ = CIPHERS[cipher_name]
    key = os.urandom(key_length)
    cipher = _cipher(cipher_name, key)
    iv = os.urandom(cipher.block_size // 8)
    padder = padding.PKCS7(cipher.block_size).padder()
    padded = padder.update(content) + padder.finalize()
    encryptor = Cipher(cipher, modes.CBC(iv)).encryptor()
    ciphertext = encryptor.update(padded) + encryptor.finalize()
    parsed = acms.Certificate.load(recipient.public_bytes(Encoding.DER))
    ktri = acms.KeyTransRecipientInfo(
        {
            "version": "v0",
            "rid": acms.RecipientIdentifier(
                name="issuer_and_serial_number",
                value=acms.IssuerAndSerialNumber(
                    {"issuer": parsed.issuer, "serial_number": parsed.serial_number}
                ),
            ),
            "key_encryption_algorithm": {"algorithm": "rsaes_pkcs1v15"},
            "encrypted_key": public.encrypt(key, rsa_padding.PKCS1v15()),
        }
    )
    enveloped = acms.EnvelopedData(
        {
            "version": "v0",
            "recipient_infos": [acms.RecipientInfo(name="ktri", value=ktri)],
            "encrypted_content_info": {
                "content_type": "data",
                "content_encryption_algorithm": algos.EncryptionAlgorithm(
                    {"algorithm": cipher_name, "parameters": iv}
                ),
                "encrypted_content": ciphertext,
            },
        }
    )
    return bytes(acms.ContentInfo({"content_type": "enveloped_data", "content": enveloped}).dump())
