/* Reads a token on stdin and writes token.h: "OK:" + token, XORed with a
 * keystream seeded by the correct sum of data.h. token.c decodes it with
 * the sum the student's program computes, so only a fixed program shows it. */
#include <stdio.h>
#include "data.h"

int main(void) {
    long sum = 0;
    for (int i = 0; i < MEASUREMENT_COUNT; i++)
        sum += measurements[i];
    unsigned long state = (unsigned long)sum;
    char plain[512] = "OK:";
    size_t length = 3 + fread(plain + 3, 1, sizeof plain - 4, stdin);
    printf("/* Generated for you: your token, encoded. Fix stats.c to read it. */\n");
    printf("static const unsigned char token_bytes[] = {");
    for (size_t i = 0; i < length; i++) {
        state = state * 6364136223846793005UL + 1442695040888963407UL;
        printf("%s0x%02x", i ? ", " : "", (unsigned char)plain[i] ^ (unsigned char)(state >> 56));
    }
    printf("};\n#define TOKEN_LENGTH %zu\n", length);
    return 0;
}
