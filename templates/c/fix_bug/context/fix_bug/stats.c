/* stats: prints the total and the mean of the measurements in data.h.
 * Something is wrong with the total. */
#include <stdio.h>
#include "data.h"

void print_token(long total);

static long total_of(const int *values, int count) {
    long total = 0;
    for (int i = 1; i < count; i++)
        total += values[i];
    return total;
}

int main(void) {
    long total = total_of(measurements, MEASUREMENT_COUNT);
    printf("%d measurements, total %ld, mean %.2f\n", MEASUREMENT_COUNT, total,
           (double)total / MEASUREMENT_COUNT);
    print_token(total);
    return 0;
}
