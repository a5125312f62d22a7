#ifndef PGBACULA_SHA256_H
#define PGBACULA_SHA256_H
#include <stddef.h>
#include <stdint.h>

/* The first 16 lower-case hexadecimal digits of the SHA-256 of data (NUL-terminated). */
void sha256_hex16(const uint8_t *data, size_t len, char out[17]);

#endif
