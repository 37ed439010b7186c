-- sf.nn: the module protocol, containers, layers, blocks and losses.
local sf = require "surgft.core"
local nn = require "surgft.nn.module"
require("surgft.nn.containers")(nn, sf)
require("surgft.nn.layers")(nn, sf)
require("surgft.nn.blocks")(nn, sf)
require("surgft.nn.losses")(nn, sf)
return nn
