#ifndef COMPROBIFY_CLIBPQ_SHIM_H
#define COMPROBIFY_CLIBPQ_SHIM_H

#include <libpq-fe.h>
#include <openssl/ssl.h>

/* The pool's watcher waits on libpq's sockets with epoll and is stopped
   through an eventfd (Linux only; Glibc's Swift module has neither). */
#ifdef __linux__
#include <sys/epoll.h>
#include <sys/eventfd.h>
#endif

/* Bytes of a TLS connection that OpenSSL has already decrypted and libpq has
   not taken yet (libpq reads into a buffer that may be smaller than a TLS
   record). They have left the socket, so a wait on the socket does not see
   them. 0 on a connection without TLS, or with a library other than OpenSSL. */
static inline int clibpq_tls_pending(PGconn *conn) {
    SSL *ssl = (SSL *)PQsslStruct(conn, "OpenSSL");
    return ssl != NULL ? SSL_pending(ssl) : 0;
}

/* libpq's diagnostic field codes are char-literal macros ('C', 'M', ...),
   which Swift cannot import. Re-expose the ones the wrapper reads. */
static const int CLIBPQ_DIAG_SQLSTATE = PG_DIAG_SQLSTATE;
static const int CLIBPQ_DIAG_MESSAGE_PRIMARY = PG_DIAG_MESSAGE_PRIMARY;
static const int CLIBPQ_DIAG_MESSAGE_DETAIL = PG_DIAG_MESSAGE_DETAIL;
static const int CLIBPQ_DIAG_CONSTRAINT_NAME = PG_DIAG_CONSTRAINT_NAME;
static const int CLIBPQ_DIAG_COLUMN_NAME = PG_DIAG_COLUMN_NAME;
static const int CLIBPQ_DIAG_SOURCE_FUNCTION = PG_DIAG_SOURCE_FUNCTION;
static const int CLIBPQ_DIAG_SEVERITY_NONLOCALIZED = PG_DIAG_SEVERITY_NONLOCALIZED;

#endif
