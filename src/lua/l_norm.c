/* placeholder: filled in by its own change */
#include "sfl.h"
const sfl_area sfl_area_norm = {NULL, NULL, NULL, "kernels"};
