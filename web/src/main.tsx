import { render } from "preact";
import { App } from "./app";
import { detectLang, setLang } from "./i18n";
import { start } from "./session";
import { store } from "./store";
import "./style.css";

setLang(detectLang());
const root = document.getElementById("app");
if (root) render(<App />, root);
if (store.state.token) void start();
