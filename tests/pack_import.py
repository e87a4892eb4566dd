"""How ComfyUI imports a custom node folder, as Python source for a subprocess (no test functions here)."""


def comfyui_style_import(folder) -> str:
    """ComfyUI's loader: module named after the folder's path, submodules searched inside it; binds `pack`."""
    return f"""
        import importlib.util, sys
        folder = {str(folder)!r}
        name = folder.replace(".", "_x_")
        spec = importlib.util.spec_from_file_location(name, folder + "/__init__.py",
                                                      submodule_search_locations=[folder])
        pack = importlib.util.module_from_spec(spec)
        sys.modules[name] = pack
        spec.loader.exec_module(pack)
    """
