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

#endif
