/* Daily rainfall in millimetres, one week. */
static const int measurements[] = {12, 7, 0, 3, 25, 9, 4};
#define MEASUREMENT_COUNT ((int)(sizeof measurements / sizeof measurements[0]))
