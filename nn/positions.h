#pragma once
// Position embeddings. Each module offers embed(length, start = 0) -> [length, d] and
// forward(x [..., L, d]) -> x + embed(L); a length beyond what a module can embed is an rw::Error
// naming the module and both numbers.
#include "nn/axial_positions.h"
#include "nn/learned_positions.h"
#include "nn/sinusoidal_positions.h"
