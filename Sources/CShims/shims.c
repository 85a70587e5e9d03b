#define _GNU_SOURCE
#include "CShims.h"
#include <pthread.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>

int skylark_hkdf_sha256(const uint8_t *ikm, size_t ikm_len,
                        const uint8_t *salt, size_t salt_len,
                        const uint8_t *info, size_t info_len,
                        uint8_t *out, size_t out_len) {
    EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
    if (kdf == NULL) return 0;
    EVP_KDF_CTX *ctx = EVP_KDF_CTX_new(kdf);
    EVP_KDF_free(kdf);
    if (ctx == NULL) return 0;
    OSSL_PARAM params[5];
    int n = 0;
    params[n++] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, "SHA256", 0);
    params[n++] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)ikm, ikm_len);
    if (salt_len > 0)
        params[n++] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)salt, salt_len);
    params[n++] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *)info, info_len);
    params[n] = OSSL_PARAM_construct_end();
    int ok = EVP_KDF_derive(ctx, out, out_len, params) == 1;
    EVP_KDF_CTX_free(ctx);
    return ok;
}

long skylark_bio_mem_data(BIO *bio, char **data) { return BIO_get_mem_data(bio, data); }

void skylark_openssl_free(void *pointer) { OPENSSL_free(pointer); }

int skylark_recvmmsg(int fd, struct msghdr *messages, unsigned int *lengths, unsigned int count, int flags) {
    struct mmsghdr batch[SKYLARK_MMSG_MAX];
    if (count > SKYLARK_MMSG_MAX) count = SKYLARK_MMSG_MAX;
    for (unsigned int i = 0; i < count; i++) {
        batch[i].msg_hdr = messages[i];
        batch[i].msg_len = 0;
    }
    int received = recvmmsg(fd, batch, count, flags, NULL);
    for (int i = 0; i < received; i++) {
        messages[i].msg_namelen = batch[i].msg_hdr.msg_namelen;
        messages[i].msg_flags = batch[i].msg_hdr.msg_flags;
        lengths[i] = batch[i].msg_len;
    }
    return received;
}

int skylark_sendmmsg(int fd, struct msghdr *messages, unsigned int count, int flags) {
    struct mmsghdr batch[SKYLARK_MMSG_MAX];
    if (count > SKYLARK_MMSG_MAX) count = SKYLARK_MMSG_MAX;
    for (unsigned int i = 0; i < count; i++) {
        batch[i].msg_hdr = messages[i];
        batch[i].msg_len = 0;
    }
    return sendmmsg(fd, batch, count, flags);
}

int skylark_name_this_thread(const char *name) {
    return pthread_setname_np(pthread_self(), name);
}
