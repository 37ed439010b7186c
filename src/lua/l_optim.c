/* placeholder: filled in by its own change */
#include "sfl.h"
const sfl_area sfl_area_optim = {NULL, NULL, NULL, "kernels"};
