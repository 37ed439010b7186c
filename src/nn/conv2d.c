/* placeholder: filled in by its own change */
#include "nn.h"
