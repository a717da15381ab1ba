#ifndef COMPROBIFY_COPENSSL_SHIM_H
#define COMPROBIFY_COPENSSL_SHIM_H

#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/err.h>
#include <openssl/pkcs12.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <openssl/pem.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/rsa.h>
#include <openssl/provider.h>
#include <openssl/hmac.h>

/* Iteration counts a PKCS#12 file asks for, read before any key is derived,
   so that a file cannot make the server derive keys for minutes. Each returns
   -1 when the count cannot be read (an unknown algorithm, say). */

/* The PBKDF2 parameters of a PBES2 algorithm (the caller frees them); NULL
   when its key derivation is not PBKDF2 or cannot be read. */
static inline PBKDF2PARAM *comprobify_pbkdf2_parameters(const PBE2PARAM *pbes2) {
    const ASN1_OBJECT *kdf = NULL;
    int kdfType = 0;
    const void *kdfValue = NULL;
    X509_ALGOR_get0(&kdf, &kdfType, &kdfValue, pbes2->keyfunc);
    if (OBJ_obj2nid(kdf) != NID_id_pbkdf2 || kdfType != V_ASN1_SEQUENCE || kdfValue == NULL) return NULL;
    const unsigned char *cursor = ASN1_STRING_get0_data((const ASN1_STRING *)kdfValue);
    return d2i_PBKDF2PARAM(NULL, &cursor, ASN1_STRING_length((const ASN1_STRING *)kdfValue));
}

/* The count of a password-based encryption algorithm: PBES1 (PBEParameter)
   or PBES2 with PBKDF2. */
static inline long comprobify_pbe_iterations(const X509_ALGOR *algorithm) {
    const ASN1_OBJECT *oid = NULL;
    int type = 0;
    const void *value = NULL;
    if (algorithm == NULL) return -1;
    X509_ALGOR_get0(&oid, &type, &value, algorithm);
    if (type != V_ASN1_SEQUENCE || value == NULL) return -1;
    const unsigned char *cursor = ASN1_STRING_get0_data((const ASN1_STRING *)value);
    long length = ASN1_STRING_length((const ASN1_STRING *)value);
    long iterations = -1;
    if (OBJ_obj2nid(oid) == NID_pbes2) {
        PBE2PARAM *pbes2 = d2i_PBE2PARAM(NULL, &cursor, length);
        if (pbes2 == NULL) return -1;
        PBKDF2PARAM *pbkdf2 = comprobify_pbkdf2_parameters(pbes2);
        if (pbkdf2 != NULL) {
            iterations = ASN1_INTEGER_get(pbkdf2->iter);
            PBKDF2PARAM_free(pbkdf2);
        }
        PBE2PARAM_free(pbes2);
    } else {
        PBEPARAM *pbes1 = d2i_PBEPARAM(NULL, &cursor, length);
        if (pbes1 == NULL) return -1;
        iterations = ASN1_INTEGER_get(pbes1->iter);
        PBEPARAM_free(pbes1);
    }
    return iterations;
}

/* The count of the file's MAC (1 when the file states none). */
static inline long comprobify_pkcs12_mac_iterations(const PKCS12 *file) {
    const ASN1_INTEGER *iterations = NULL;
    PKCS12_get0_mac(NULL, NULL, NULL, &iterations, file);
    return iterations == NULL ? 1 : ASN1_INTEGER_get(iterations);
}

/* The key derivation of an encrypted safe (PKCS#7 encryptedData); NULL when
   there is none to read. */
static inline const X509_ALGOR *comprobify_pkcs7_encryption(const PKCS7 *safe) {
    if (safe == NULL || safe->d.encrypted == NULL || safe->d.encrypted->enc_data == NULL) return NULL;
    return safe->d.encrypted->enc_data->algorithm;
}

/* The key derivation of a shrouded key bag; NULL when there is none to read. */
static inline const X509_ALGOR *comprobify_shrouded_key_encryption(const PKCS12_SAFEBAG *bag) {
    const X509_SIG *shrouded = PKCS12_SAFEBAG_get0_pkcs8(bag);
    const X509_ALGOR *algorithm = NULL;
    if (shrouded == NULL) return NULL;
    X509_SIG_get0(shrouded, &algorithm, NULL);
    return algorithm;
}

/* Blocks of `size` bytes that `length` bytes take. */
static inline long comprobify_blocks(int length, int size) {
    if (length <= 0) return 0;
    if (size <= 0) return length;
    return (length + size - 1) / size;
}

/* How many chains of its stated iterations one decryption with `algorithm`
   derives, each iteration a hash computation: a PKCS#12 PBE derives its key
   and its IV apart, each in blocks of its hash's length and each block a
   chain of its own (three for triple-DES with SHA-1); PBKDF2 runs a chain of
   HMACs, two hash computations each, per block of the cipher's key; PBKDF1
   (PKCS#5 v1.5) one chain. At least 1. What cannot be read counts as the
   costliest PKCS#12 PBE's three. */
static inline long comprobify_pbe_chains(const X509_ALGOR *algorithm) {
    const ASN1_OBJECT *oid = NULL;
    int type = 0;
    const void *value = NULL;
    if (algorithm == NULL) return 3;
    X509_ALGOR_get0(&oid, &type, &value, algorithm);
    int nid = OBJ_obj2nid(oid);
    long chains = 3;
    if (nid == NID_pbes2) {
        if (type != V_ASN1_SEQUENCE || value == NULL) return 3;
        const unsigned char *cursor = ASN1_STRING_get0_data((const ASN1_STRING *)value);
        PBE2PARAM *pbes2 = d2i_PBE2PARAM(NULL, &cursor, ASN1_STRING_length((const ASN1_STRING *)value));
        if (pbes2 == NULL) return 3;
        int digestSize = 20; /* hmacWithSHA1, PBKDF2's PRF when none is named */
        PBKDF2PARAM *pbkdf2 = comprobify_pbkdf2_parameters(pbes2);
        if (pbkdf2 != NULL) {
            int digestNid = 0;
            if (pbkdf2->prf != NULL
                && EVP_PBE_find(EVP_PBE_TYPE_PRF, OBJ_obj2nid(pbkdf2->prf->algorithm), NULL, &digestNid, NULL) == 1) {
                const EVP_MD *digest = EVP_get_digestbynid(digestNid);
                if (digest != NULL) digestSize = EVP_MD_get_size(digest);
            }
            PBKDF2PARAM_free(pbkdf2);
        }
        /* OpenSSL derives the cipher's key length, whatever the parameters state. */
        const EVP_CIPHER *cipher = pbes2->encryption == NULL ? NULL : EVP_get_cipherbyobj(pbes2->encryption->algorithm);
        chains = 2 * comprobify_blocks(cipher != NULL ? EVP_CIPHER_get_key_length(cipher) : 64, digestSize);
        PBE2PARAM_free(pbes2);
    } else {
        int cipherNid = 0;
        int digestNid = 0;
        if (EVP_PBE_find(EVP_PBE_TYPE_OUTER, nid, &cipherNid, &digestNid, NULL) != 1) return 3;
        switch (nid) {
        case NID_pbe_WithSHA1And128BitRC4:
        case NID_pbe_WithSHA1And40BitRC4:
        case NID_pbe_WithSHA1And3_Key_TripleDES_CBC:
        case NID_pbe_WithSHA1And2_Key_TripleDES_CBC:
        case NID_pbe_WithSHA1And128BitRC2_CBC:
        case NID_pbe_WithSHA1And40BitRC2_CBC: {
            const EVP_CIPHER *cipher = EVP_get_cipherbynid(cipherNid);
            const EVP_MD *digest = EVP_get_digestbynid(digestNid);
            if (cipher == NULL || digest == NULL) return 3;
            int size = EVP_MD_get_size(digest);
            chains = comprobify_blocks(EVP_CIPHER_get_key_length(cipher), size)
                + comprobify_blocks(EVP_CIPHER_get_iv_length(cipher), size);
            break;
        }
        default:
            chains = 1;
        }
    }
    return chains < 1 ? 1 : chains;
}

/* What a PKCS#8 key is, read before it is decoded: 1 for RSA
   (rsaEncryption) whose private key is at most `maximumLength` bytes of DER,
   2 for a longer RSA key, 0 for any other algorithm or what cannot be read.
   Decoding some other algorithms' keys (DSA with a huge modulus, say)
   computes with them, for as long as their size makes it take. */
static inline int comprobify_pkcs8_rsa_kind(const PKCS8_PRIV_KEY_INFO *info, int maximumLength) {
    const ASN1_OBJECT *algorithm = NULL;
    const unsigned char *key = NULL;
    int length = 0;
    if (info == NULL || PKCS8_pkey_get0(&algorithm, &key, &length, NULL, info) != 1) return 0;
    if (OBJ_obj2nid(algorithm) != NID_rsaEncryption || length <= 0) return 0;
    return length <= maximumLength ? 1 : 2;
}

/* Whether an RSA key's public exponent is odd, at least 3 (with e = 1 a
   "signature" is the padded digest itself, which anyone can make) and at
   most 256 bits long (FIPS 186-5's bound: OpenSSL checks each signature by
   raising it to e, so a longer e makes every signature slower). */
static inline int comprobify_rsa_exponent_is_sound(const EVP_PKEY *key) {
    BIGNUM *exponent = NULL;
    if (EVP_PKEY_get_bn_param(key, "e", &exponent) != 1 || exponent == NULL) return 0;
    BIGNUM *three = BN_new();
    int sound = three != NULL && BN_set_word(three, 3) == 1 && BN_is_odd(exponent) && BN_cmp(exponent, three) >= 0
        && BN_num_bits(exponent) <= 256;
    BN_free(three);
    BN_free(exponent);
    return sound;
}

/* Whether an RSA private key's values are no longer than a two-prime key's:
   n = p·q, d no longer than n, the CRT exponents no longer than their primes
   and the coefficient no longer than p. OpenSSL signs with the CRT values as
   they are, and when a result fails its check it signs again with d: a key
   whose CRT exponents are not reduced, or whose d is many times n's length,
   still makes correct signatures, each many times slower. A few
   multiplications: cheap enough for every key restored from storage. */
static inline int comprobify_rsa_key_is_bounded(const EVP_PKEY *key) {
    BIGNUM *n = NULL, *d = NULL, *p = NULL, *q = NULL, *dp = NULL, *dq = NULL, *qinv = NULL, *extra = NULL;
    BIGNUM *product = BN_new();
    BN_CTX *scratch = BN_CTX_new();
    int bounded = product != NULL && scratch != NULL
        && EVP_PKEY_get_bn_param(key, "n", &n) == 1 && EVP_PKEY_get_bn_param(key, "d", &d) == 1
        && EVP_PKEY_get_bn_param(key, "rsa-factor1", &p) == 1 && EVP_PKEY_get_bn_param(key, "rsa-factor2", &q) == 1
        && EVP_PKEY_get_bn_param(key, "rsa-exponent1", &dp) == 1 && EVP_PKEY_get_bn_param(key, "rsa-exponent2", &dq) == 1
        && EVP_PKEY_get_bn_param(key, "rsa-coefficient1", &qinv) == 1
        && EVP_PKEY_get_bn_param(key, "rsa-factor3", &extra) != 1
        && BN_num_bits(d) <= BN_num_bits(n) && BN_num_bits(dp) <= BN_num_bits(p) && BN_num_bits(dq) <= BN_num_bits(q)
        && BN_num_bits(qinv) <= BN_num_bits(p)
        && BN_mul(product, p, q, scratch) == 1 && BN_cmp(product, n) == 0;
    BN_free(n);
    BN_clear_free(d);
    BN_clear_free(p);
    BN_clear_free(q);
    BN_clear_free(dp);
    BN_clear_free(dq);
    BN_clear_free(qinv);
    BN_clear_free(extra);
    BN_clear_free(product);
    BN_CTX_free(scratch);
    return bounded;
}

/* Whether an RSA private key is a sound two-prime key: bounded (above), and
   by OpenSSL's pairwise check p and q prime, d·e = 1 modulo lcm(p − 1, q − 1),
   and its CRT values exactly d mod (p − 1), d mod (q − 1) and q⁻¹ mod p (a
   wrong one of the right length sends every signature back to d). The bounds
   come first, so that the primality tests run on factors no longer than n;
   those tests take milliseconds, once, when a certificate is uploaded. */
static inline int comprobify_rsa_key_is_sound(EVP_PKEY *key) {
    if (comprobify_rsa_key_is_bounded(key) != 1) return 0;
    EVP_PKEY_CTX *context = EVP_PKEY_CTX_new_from_pkey(NULL, key, NULL);
    int sound = context != NULL && EVP_PKEY_pairwise_check(context) == 1;
    EVP_PKEY_CTX_free(context);
    return sound;
}

#endif
