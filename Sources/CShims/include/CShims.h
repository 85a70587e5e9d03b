#ifndef SKYLARK_CSHIMS_H
#define SKYLARK_CSHIMS_H
#include <stddef.h>
#include <stdint.h>
#include <openssl/bio.h>

/// HKDF-SHA256 (RFC 5869) through EVP_KDF; OSSL_PARAM arrays are awkward to build from Swift.
/// Returns 1 on success, 0 on failure.
int skylark_hkdf_sha256(const uint8_t *ikm, size_t ikm_len,
                        const uint8_t *salt, size_t salt_len,
                        const uint8_t *info, size_t info_len,
                        uint8_t *out, size_t out_len);

/// BIO_get_mem_data is a macro.
long skylark_bio_mem_data(BIO *bio, char **data);

/// OPENSSL_free is a macro.
void skylark_openssl_free(void *pointer);

#endif
