// Fails the way its argument says, a few calls deep, after a line on stderr:
// `abort`, `divide` (integer division by zero) or `oob` (a store far past the end of
// linear memory).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

__attribute__((noinline)) static int divide(volatile int a, volatile int b) {
    return a / b;
}

__attribute__((noinline)) static void poke(volatile int *p) {
    *p = 42;
}

__attribute__((noinline)) static int fail(const char *how) {
    if (strcmp(how, "abort") == 0)
        abort();
    if (strcmp(how, "divide") == 0)
        return divide(7, 0);
    if (strcmp(how, "oob") == 0)
        poke((volatile int *)0xfffffff0u);
    fprintf(stderr, "trap: unknown failure %s\n", how);
    return 2;
}

__attribute__((noinline)) static int run(const char *how) {
    fprintf(stderr, "trap: about to %s\n", how);
    return fail(how) + 1;
}

int main(int argc, char **argv) {
    return run(argc > 1 ? argv[1] : "abort");
}
