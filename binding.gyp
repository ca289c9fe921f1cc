{
  "targets": [
    {
      "target_name": "torchbert",
      "sources": [
        "<!@(node scripts/unity-sources.js)"
      ],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")",
        "<!@(node scripts/find-libtorch.js --include)"
      ],
      "defines": [
        "NAPI_VERSION=8",
        "NAPI_CPP_EXCEPTIONS",
        "NODE_ADDON_API_CPP_EXCEPTIONS_ALL",
        "NODE_ADDON_API_DISABLE_DEPRECATED"
      ],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-std=gnu++17", "-std=gnu++14"],
      "cflags_cc": ["-std=c++20", "-fexceptions", "-frtti", "-O2", "<!@(node scripts/find-libtorch.js --cxxflags)"],
      "libraries": ["<!@(node scripts/find-libtorch.js --libs)"]
    }
  ]
}
