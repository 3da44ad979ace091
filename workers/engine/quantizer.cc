#include "workers/engine/quantizer.h"
