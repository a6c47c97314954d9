/* kernels.c: placeholder */
