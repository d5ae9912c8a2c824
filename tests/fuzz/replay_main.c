/*
 * Replays saved inputs through a fuzz target without libFuzzer, so that every build (gcc, sanitizers)
 * runs the regression inputs under fixtures/fuzz/ as an ordinary test. usage: replay FILE...
 */
#include <stdio.h>
#include <stdlib.h>

#include "fuzz_common.h"

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        FILE *file = fopen(argv[i], "rb");
        unsigned char *data;
        long size;

        if (!file || fseek(file, 0, SEEK_END) < 0 || (size = ftell(file)) < 0 || fseek(file, 0, SEEK_SET) < 0) {
            fprintf(stderr, "cannot read %s\n", argv[i]);
            return 2;
        }
        data = malloc((size_t)size + 1);
        if (!data || fread(data, 1, (size_t)size, file) != (size_t)size) {
            fprintf(stderr, "cannot read %s\n", argv[i]);
            return 2;
        }
        fclose(file);
        LLVMFuzzerTestOneInput(data, (size_t)size);
        free(data);
    }
    printf("replayed %d inputs\n", argc - 1);
    return 0;
}
