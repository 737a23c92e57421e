//! The admin page's "Machines" section: the Swarm's nodes, where an admin drains a machine
//! before maintenance and lets it take tasks again. Absent on a single engine.

use leptos::prelude::*;
use pier_types::{format_cpus, Node, NodeAvailability, NodeRole, NodeState};

use crate::{
    components::{CsrfField, Outcome, BUTTON_SMALL, CARD},
    form::{ActionOf, FormAction, PostForm},
    rpc::nodes::{cluster_status, SetNodeAvailability},
};

#[component]
pub fn Machines() -> impl IntoView {
    let act = FormAction::of::<SetNodeAvailability>();
    let cluster = crate::codec::resource(move || act.version().get(), |_| cluster_status());
    view! {
        <Transition fallback=|| ()>
            {move || cluster.get().map(|r| match r {
                Ok(Some(c)) => view! {
                    <section class=format!("{CARD} mt-6 overflow-x-auto") aria-labelledby="machines" data-testid="machines">
                        <h2 id="machines" class="text-lg font-semibold">"Machines"</h2>
                        <p class="mt-1 text-sm text-slate-500">
                            "The Docker Swarm this Pier runs on. Drain a machine before maintenance: its tasks move to the others."
                        </p>
                        <div class="my-4" data-testid="machine-outcome"><Outcome value=act.value().into()/></div>
                        <table class="w-full text-left text-sm">
                            <thead class="text-slate-500">
                                <tr>
                                    <th class="py-2 pr-4 font-medium">"Machine"</th>
                                    <th class="py-2 pr-4 font-medium">"Address"</th>
                                    <th class="py-2 pr-4 font-medium">"Role"</th>
                                    <th class="py-2 pr-4 font-medium">"State"</th>
                                    <th class="py-2 pr-4 font-medium">"Takes tasks"</th>
                                    <th class="py-2 pr-4 font-medium">"CPUs / memory"</th>
                                    <th class="py-2 pr-4 font-medium">"Tasks"</th>
                                    <th class="py-2 font-medium"></th>
                                </tr>
                            </thead>
                            <tbody>
                                {c.nodes.into_iter().map(|n| view! { <MachineRow node=n act=act/> }).collect_view()}
                            </tbody>
                        </table>
                        <div class="mt-4 text-sm">
                            <p class="font-medium">"Add a machine"</p>
                            <p class="mt-1 text-slate-500">
                                "Install Docker on it, open 2377/tcp, 7946/tcp+udp and 4789/udp between the machines, then run there:"
                            </p>
                            <pre class="mt-2 overflow-x-auto rounded bg-slate-100 p-2 text-xs dark:bg-slate-800" data-testid="join-command">{c.join_command}</pre>
                        </div>
                    </section>
                }.into_any(),
                Ok(None) => ().into_any(),
                // An engine that does not answer: the engine banner above says so.
                Err(e) if e.code == "unavailable" => ().into_any(),
                Err(e) => view! {
                    <p class="mt-6 text-sm font-medium text-amber-800 dark:text-amber-300" data-testid="machines">
                        {format!("The Swarm's machines cannot be listed: {}", e.message)}
                    </p>
                }.into_any(),
            })}
        </Transition>
    }
}

#[component]
fn MachineRow(node: Node, act: ActionOf<SetNodeAvailability>) -> impl IntoView {
    let role = match (node.role, node.leader) {
        (NodeRole::Manager, true) => "manager (leader)",
        (NodeRole::Manager, false) => "manager",
        (NodeRole::Worker, _) => "worker",
    };
    let state_class = if node.state == NodeState::Ready {
        "text-emerald-700 dark:text-emerald-400"
    } else {
        "font-medium text-red-700 dark:text-red-400"
    };
    let takes = match node.availability {
        NodeAvailability::Active => "yes",
        NodeAvailability::Pause => "no (paused)",
        NodeAvailability::Drain => "no (drained)",
    };
    let buttons: Vec<(NodeAvailability, &str)> = match node.availability {
        NodeAvailability::Active => vec![
            (NodeAvailability::Drain, "Drain"),
            (NodeAvailability::Pause, "Pause"),
        ],
        _ => vec![(NodeAvailability::Active, "Activate")],
    };
    let id = node.id.clone();
    let hostname = node.hostname.clone();
    let forms = buttons
        .into_iter()
        .map(|(to, label)| {
            let id = id.clone();
            view! {
                <PostForm action=act>
                    <CsrfField/>
                    <input type="hidden" name="id" value=id/>
                    <input type="hidden" name="availability" value=to.as_str()/>
                    <button type="submit" class=BUTTON_SMALL>{label}</button>
                </PostForm>
            }
        })
        .collect_view();
    view! {
        <tr class="border-t border-slate-100 dark:border-slate-800" data-testid="machine" data-hostname=hostname>
            <td class="py-2 pr-4 font-medium">{node.hostname}<div class="text-xs font-normal text-slate-500">{node.engine_version}</div></td>
            <td class="py-2 pr-4 font-mono text-xs">{node.address}</td>
            <td class="py-2 pr-4">{role}</td>
            <td class=format!("py-2 pr-4 {state_class}") title=node.message>{node.state.as_str()}</td>
            <td class="py-2 pr-4" data-testid="availability">{takes}</td>
            <td class="py-2 pr-4">{format!("{} / {} MiB", format_cpus(node.cpus_milli), node.memory_bytes / (1024 * 1024))}</td>
            <td class="py-2 pr-4">{node.tasks}</td>
            <td class="py-2">
                <div class="flex gap-1">
                    {forms}
                </div>
            </td>
        </tr>
    }
}
