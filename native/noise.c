/* noise.c: placeholder */
