/* Decodes your token with the total that stats.c computed. You do not need
 * to change this file. */
#include <stdio.h>
#include <string.h>
#include "token.h"

void print_token(long total) {
    unsigned char plain[TOKEN_LENGTH];
    unsigned long state = (unsigned long)total;
    for (size_t i = 0; i < TOKEN_LENGTH; i++) {
        state = state * 6364136223846793005UL + 1442695040888963407UL;
        plain[i] = token_bytes[i] ^ (unsigned char)(state >> 56);
    }
    if (memcmp(plain, "OK:", 3) == 0)
        printf("Well done! Your token: %.*s\n", (int)(TOKEN_LENGTH - 3), plain + 3);
    else
        printf("The total is not right yet, so your token does not decode.\n");
}
