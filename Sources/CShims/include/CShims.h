#ifndef SKYLARK_CSHIMS_H
#define SKYLARK_CSHIMS_H
#include <stddef.h>
#include <stdint.h>
#include <openssl/bio.h>
#include <sys/socket.h>

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

/// recvmmsg(2) and sendmmsg(2): struct mmsghdr is a GNU extension the Swift Glibc module does
/// not show. Slot i is described by `messages[i]` (its msg_namelen and msg_flags are updated as
/// recvmmsg updates them); `lengths[i]` receives the byte count of datagram i. At most
/// SKYLARK_MMSG_MAX slots per call. Return the number of datagrams, or -1 with errno set.
#define SKYLARK_MMSG_MAX 64
int skylark_recvmmsg(int fd, struct msghdr *messages, unsigned int *lengths, unsigned int count, int flags);
int skylark_sendmmsg(int fd, struct msghdr *messages, unsigned int count, int flags);

/// pthread_setname_np for the calling thread (a GNU extension, like the above). Linux keeps 15
/// characters.
int skylark_name_this_thread(const char *name);

#endif
