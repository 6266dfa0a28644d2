-- wrk script: every request asks for one of the corpus's r/NNNNN.html files, picked at random
-- with a fixed seed (the same sequence against nginx and fserve).
--   FSB_RANDOM_FILES  how many files r/00000.html … exist (default 10000)
--   FSB_SEED          PRNG seed (default 42)
-- Also prints the FSB summary line (summary.lua, loaded from this script's directory).

local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "summary.lua")

local files = tonumber(os.getenv("FSB_RANDOM_FILES") or "10000")
local seed = tonumber(os.getenv("FSB_SEED") or "42")
local paths = {}

init = function(args)
  math.randomseed(seed)
  for i = 1, files do
    paths[i] = string.format("/r/%05d.html", i - 1)
  end
end

request = function()
  return wrk.format("GET", paths[math.random(files)])
end
