// Prints a line, then exits with status 3 (exit flushes stdout, then proc_exit(3)).
#include <stdio.h>
#include <stdlib.h>

int main(void) {
    printf("exiting with 3\n");
    exit(3);
}
