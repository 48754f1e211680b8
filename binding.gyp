{
  "targets": [
    {
      "target_name": "samepage",
      "sources": [
        "<!@(node -p \"require('fs').readdirSync('native/core/src').filter(f => f.endsWith('.c')).map(f => 'native/core/src/' + f).join(' ')\")",
        "native/addon/addon.cc",
        "native/addon/convert.cc",
        "native/addon/engine_wrap.cc",
        "native/addon/memory_pin.cc"
      ],
      "include_dirs": ["native/core/include", "native/core/src"],
      "dependencies": ["<!(node -p \"require('node-addon-api').targets\"):node_addon_api_except"],
      "defines": ["NAPI_VERSION=8", "NODE_ADDON_API_DISABLE_DEPRECATED", "_GNU_SOURCE"],
      "cflags_c": ["-std=c11", "-Wall", "-Wextra", "-Wno-unused-parameter", "-O2", "-fvisibility=hidden"],
      "cflags_cc": ["-std=c++17", "-Wall", "-Wextra", "-Wno-unused-parameter", "-O2"]
    }
  ]
}
