#ifndef COMPROBIFY_COPENSSL_SHIM_H
#define COMPROBIFY_COPENSSL_SHIM_H

#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/crypto.h>

#endif
